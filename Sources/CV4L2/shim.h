/*
 * shim.h — the V4L2 calls the Video module makes, one wrapper per ioctl request.
 *
 * Every call goes through libv4l2 (v4l2_open/v4l2_ioctl/v4l2_mmap/...) with its format
 * conversion switched off (V4L2_DISABLE_CONVERSION): frames arrive as the driver produces them
 * and are converted by libswscale / decoded by libavcodec. Each wrapper retries on EINTR and
 * returns 0 (or a non-negative result) on success and -errno on failure, so Swift never reads
 * errno after another call may have changed it.
 */
#ifndef M2CLIP_CV4L2_SHIM_H
#define M2CLIP_CV4L2_SHIM_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libv4l2.h>
#include <linux/videodev2.h>

static inline int m2v_xioctl(int fd, unsigned long request, void *argument) {
    int result;
    do {
        result = v4l2_ioctl(fd, request, argument);
    } while (result == -1 && errno == EINTR);
    return result == -1 ? -errno : result;
}

/* open(2) non-blocking, then v4l2_fd_open without conversion. Returns fd or -errno. */
static inline int m2v_open(const char *path) {
    int fd;
    do {
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    } while (fd == -1 && errno == EINTR);
    if (fd == -1) return -errno;
    if (v4l2_fd_open(fd, V4L2_DISABLE_CONVERSION) == -1) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

static inline void m2v_close(int fd) { v4l2_close(fd); }

static inline int m2v_querycap(int fd, struct v4l2_capability *c) { return m2v_xioctl(fd, VIDIOC_QUERYCAP, c); }
static inline int m2v_enum_fmt(int fd, struct v4l2_fmtdesc *d) { return m2v_xioctl(fd, VIDIOC_ENUM_FMT, d); }
static inline int m2v_s_fmt(int fd, struct v4l2_format *f) { return m2v_xioctl(fd, VIDIOC_S_FMT, f); }
static inline int m2v_g_parm(int fd, struct v4l2_streamparm *p) { return m2v_xioctl(fd, VIDIOC_G_PARM, p); }
static inline int m2v_s_parm(int fd, struct v4l2_streamparm *p) { return m2v_xioctl(fd, VIDIOC_S_PARM, p); }
static inline int m2v_reqbufs(int fd, struct v4l2_requestbuffers *r) { return m2v_xioctl(fd, VIDIOC_REQBUFS, r); }
static inline int m2v_querybuf(int fd, struct v4l2_buffer *b) { return m2v_xioctl(fd, VIDIOC_QUERYBUF, b); }
static inline int m2v_qbuf(int fd, struct v4l2_buffer *b) { return m2v_xioctl(fd, VIDIOC_QBUF, b); }
static inline int m2v_dqbuf(int fd, struct v4l2_buffer *b) { return m2v_xioctl(fd, VIDIOC_DQBUF, b); }

static inline int m2v_streamon(int fd) {
    int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    return m2v_xioctl(fd, VIDIOC_STREAMON, &type);
}

static inline int m2v_streamoff(int fd) {
    int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    return m2v_xioctl(fd, VIDIOC_STREAMOFF, &type);
}

/* v4l2_mmap of one buffer (offset from VIDIOC_QUERYBUF); NULL and *error = errno on failure. */
static inline void *m2v_mmap(int fd, size_t length, uint32_t offset, int *error) {
    void *p = v4l2_mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (int64_t)offset);
    if (p == MAP_FAILED) {
        *error = errno;
        return NULL;
    }
    return p;
}

static inline void m2v_munmap(void *p, size_t length) { v4l2_munmap(p, length); }

/* poll(2) for a readable buffer: 1 ready, 0 timeout, -errno on failure. POLLERR/POLLHUP
 * (a device gone or streaming stopped) count as ready so the next DQBUF reports why. */
static inline int m2v_poll(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLPRI};
    int result;
    do {
        result = poll(&p, 1, timeout_ms);
    } while (result == -1 && errno == EINTR);
    if (result == -1) return -errno;
    return result > 0 ? 1 : 0;
}

static inline uint32_t m2v_fourcc(char a, char b, char c, char d) { return v4l2_fourcc(a, b, c, d); }

#endif
