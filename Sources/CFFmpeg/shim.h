/*
 * shim.h — the parts of FFmpeg (5.1, Debian 12's -dev packages) the Video module uses, and
 * static inline stand-ins for the function-like and compound macros Swift cannot import.
 */
#ifndef M2CLIP_CFFMPEG_SHIM_H
#define M2CLIP_CFFMPEG_SHIM_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
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

/*
 * An in-memory, seekable AVIOContext for muxing (the MP4 muxer seeks back to write the moov
 * size): the bytes grow in `data`, up to `limit` (a write past it fails with ENOSPC, so a
 * runaway clip cannot take the process's memory). m2ff_membuf_open allocates both; free with
 * m2ff_membuf_close.
 */
typedef struct {
    uint8_t *data;
    int64_t size;
    int64_t capacity;
    int64_t position;
    int64_t limit;
} m2ff_membuf;

static inline int m2ff_membuf_write(void *opaque, uint8_t *bytes, int count) {
    m2ff_membuf *m = (m2ff_membuf *)opaque;
    if (count < 0) return AVERROR(EINVAL);
    int64_t end = m->position + count;
    if (end > m->limit) return AVERROR(ENOSPC);
    if (end > m->capacity) {
        int64_t capacity = m->capacity > 0 ? m->capacity : 65536;
        while (capacity < end) capacity *= 2;
        if (capacity > m->limit) capacity = m->limit;
        uint8_t *grown = (uint8_t *)av_realloc(m->data, (size_t)capacity);
        if (!grown) return AVERROR(ENOMEM);
        m->data = grown;
        m->capacity = capacity;
    }
    if (m->position > m->size) memset(m->data + m->size, 0, (size_t)(m->position - m->size));
    memcpy(m->data + m->position, bytes, (size_t)count);
    m->position = end;
    if (end > m->size) m->size = end;
    return count;
}

static inline int64_t m2ff_membuf_seek(void *opaque, int64_t offset, int whence) {
    m2ff_membuf *m = (m2ff_membuf *)opaque;
    int64_t target;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return m->size;
    case SEEK_SET: target = offset; break;
    case SEEK_CUR: target = m->position + offset; break;
    case SEEK_END: target = m->size + offset; break;
    default: return AVERROR(EINVAL);
    }
    if (target < 0 || target > m->limit) return AVERROR(EINVAL);
    m->position = target;
    return target;
}

static inline AVIOContext *m2ff_membuf_open(int64_t limit, m2ff_membuf **out) {
    m2ff_membuf *m = (m2ff_membuf *)av_mallocz(sizeof(m2ff_membuf));
    unsigned char *buffer = (unsigned char *)av_malloc(65536);
    if (!m || !buffer) { av_free(m); av_free(buffer); return NULL; }
    m->limit = limit;
    AVIOContext *io = avio_alloc_context(buffer, 65536, 1, m, NULL, m2ff_membuf_write, m2ff_membuf_seek);
    if (!io) { av_free(m); av_free(buffer); return NULL; }
    *out = m;
    return io;
}

static inline void m2ff_membuf_close(AVIOContext **io, m2ff_membuf **m) {
    if (io && *io) {
        av_freep(&(*io)->buffer);
        avio_context_free(io);
    }
    if (m && *m) {
        av_freep(&(*m)->data);
        av_freep(m);
    }
}

/* The stream's display matrix (AV_PKT_DATA_DISPLAYMATRIX side data), or NULL; its size in *size. */
static inline const uint8_t *m2ff_display_matrix(const AVStream *stream, size_t *size) {
    *size = 0;
    return av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, size);
}

/* Gives `stream` a copy of a display matrix; 0, or AVERROR(ENOMEM). */
static inline int m2ff_set_display_matrix(AVStream *stream, const uint8_t *data, size_t size) {
    uint8_t *copy = av_stream_new_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, size);
    if (!copy) return AVERROR(ENOMEM);
    memcpy(copy, data, size);
    return 0;
}

static inline int m2ff_packet_is_keyframe(const AVPacket *packet) {
    return (packet->flags & AV_PKT_FLAG_KEY) != 0;
}

#endif
