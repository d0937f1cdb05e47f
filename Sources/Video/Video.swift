/// Video files in: FFmpeg decoding, frame sampling and CLIP preprocessing.
///
///     VideoFile (FFmpegInput: libavformat + libavcodec, one thread)
///         → [RGBFrame] upright RGB24 (FrameConverter: libswscale + display rotation)
///     FrameSampler → which display indices make a clip (segments / dense / test views)
///     CLIPPreprocessor → Ops.Tensor (T, 3, size, size): Pillow-exact bicubic resize,
///         centre (or 3-way) crop, CLIP normalisation (CKernels m2k_resample_*)
///
/// Errors are `VideoError`: one line naming the file and, where it matters, the frame.
/// FFmpeg's own logging is off unless M2CLIP_FFMPEG_LOG=error|warning|info|debug.
