/*
 * shim.h — the parts of FFmpeg (5.1, Debian 12's -dev packages) the Video module uses, and
 * static inline stand-ins for the function-like and compound macros Swift cannot import.
 */
#ifndef M2CLIP_CFFMPEG_SHIM_H
#define M2CLIP_CFFMPEG_SHIM_H

#include <errno.h>
#include <math.h>
#include <stdint.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

/* AVERROR(e): FFmpeg's negative errno codes. */
static inline int m2ff_averror(int posix_errno) { return AVERROR(posix_errno); }
static inline int m2ff_averror_eof(void) { return AVERROR_EOF; }
static inline int m2ff_averror_eagain(void) { return AVERROR(EAGAIN); }
static inline int m2ff_averror_invaliddata(void) { return AVERROR_INVALIDDATA; }
static inline int m2ff_averror_decoder_not_found(void) { return AVERROR_DECODER_NOT_FOUND; }
static inline int m2ff_averror_stream_not_found(void) { return AVERROR_STREAM_NOT_FOUND; }

/* AV_NOPTS_VALUE is ((int64_t)UINT64_C(0x8000000000000000)), which Swift does not import. */
static inline int64_t m2ff_nopts_value(void) { return AV_NOPTS_VALUE; }
static inline int64_t m2ff_time_base(void) { return AV_TIME_BASE; }

/* av_err2str is a compound-literal macro; this writes into the caller's buffer instead. */
static inline const char *m2ff_error_string(int code, char *buffer, size_t size) {
    av_strerror(code, buffer, size);
    return buffer;
}

/* av_fourcc2str, likewise (buffer of at least AV_FOURCC_MAX_STRING_SIZE = 32 bytes). */
static inline const char *m2ff_fourcc_string(uint32_t fourcc, char *buffer, size_t size) {
    if (size < AV_FOURCC_MAX_STRING_SIZE) {
        if (size > 0) buffer[0] = 0;
        return buffer;
    }
    return av_fourcc_make_string(buffer, fourcc);
}

/*
 * The clockwise rotation, in degrees 0/90/180/270, that makes the stream's frames upright,
 * from its display matrix (AV_PKT_DATA_DISPLAYMATRIX stream side data; 0 without one).
 * av_display_rotation_get gives the counterclockwise angle, so the ffmpeg CLI's
 * `-round(angle)` normalised to [0, 360) is used, and rounded to the nearest quarter turn.
 * Flips (a negative determinant) are ignored, as ffmpeg 5.1's autorotate ignores them.
 */
static inline int m2ff_stream_rotation(const AVStream *stream) {
    size_t size = 0;
    const uint8_t *data = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, &size);
    if (!data || size < 9 * sizeof(int32_t)) return 0;
    double angle = av_display_rotation_get((const int32_t *)data);
    if (isnan(angle)) return 0;
    double theta = -round(angle);
    theta -= 360.0 * floor(theta / 360.0 + 0.9 / 360.0);
    int quarter = (int)lround(theta / 90.0) % 4;
    return quarter * 90;
}

/* sws_scale of a whole frame (Swift cannot pass AVFrame's data/linesize arrays directly). */
static inline int m2ff_scale_frame(struct SwsContext *context, const AVFrame *src, AVFrame *dst) {
    return sws_scale(context, (const uint8_t *const *)src->data, src->linesize, 0, src->height,
                     dst->data, dst->linesize);
}

static inline uint8_t *m2ff_frame_plane(const AVFrame *frame, int plane) {
    return frame->data[plane];
}

static inline int m2ff_frame_linesize(const AVFrame *frame, int plane) {
    return frame->linesize[plane];
}

/*
 * The YCbCr → RGB matrix and input range the ffmpeg CLI's scale filter (5.1, vf_scale with
 * in_color_matrix=auto) uses for a frame: the frame's own colorspace, BT.601 when it is
 * unspecified or unknown to swscale; full range for JPEG-range frames. Only the input side is
 * changed, as vf_scale does, so RGB output matches the CLI's. Returns sws_setColorspaceDetails'
 * result (-1 when the input is not YCbCr: nothing to set).
 */
static inline int m2ff_set_input_colorspace(struct SwsContext *context, int colorspace,
                                            int full_range) {
    int *inv_table, *table, src_range, dst_range, brightness, contrast, saturation;
    if (sws_getColorspaceDetails(context, &inv_table, &src_range, &table, &dst_range,
                                 &brightness, &contrast, &saturation) < 0)
        return -1;
    if (colorspace < 1 || colorspace > 10 || colorspace == 8) colorspace = AVCOL_SPC_BT470BG;
    return sws_setColorspaceDetails(context, sws_getCoefficients(colorspace), full_range, table,
                                    dst_range, brightness, contrast, saturation);
}

/* The first `size` bytes of a file as seen by FFmpeg's content probe (no file name, so no
 * extension match): the best-matching demuxer and its score, or NULL. */
static inline const AVInputFormat *m2ff_probe_content(const uint8_t *bytes, int size,
                                                     int *score) {
    AVProbeData probe = {0};
    probe.filename = "";
    probe.buf = (unsigned char *)bytes;
    probe.buf_size = size;
    return av_probe_input_format3(&probe, 1, score);
}

#endif
