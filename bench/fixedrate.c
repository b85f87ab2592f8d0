/* The fixed-rate generator's loop (bench/fixedrate.py ``run``) in C.
 *
 * Same model, same loop, same counts: request k is due at start + k / rate, goes
 * out on an idle keep-alive connection when due or waits in a backlog while every
 * connection is busy, and its latency is counted from when it was due. Written in
 * C because on a two-CPU host the generator shares the load CPU with the backend:
 * in Python it costs ~21 µs of CPU a request (half of it its own, half the
 * kernel's), which at the p99-fixed scenario's rate asked for more than that CPU
 * has. bench/fixedrate.py builds it with the host's C compiler (the one the proxy
 * core is built with), runs it, and keeps its Python loop for a host without one.
 *
 * Usage: fixedrate-c PORT RATE DURATION_S CONNECTIONS GRACE_S PATHS_FILE
 * Requests go to 127.0.0.1:PORT only. Prints three lines: "counts scheduled
 * completed queued connect read write status timeout", then "latency_us v...",
 * then "send_lag_us v..." (microseconds).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESPONSE (1 << 20)
#define MAX_EVENTS 256

struct conn {
    int fd; /* -1: closed */
    int busy;
    char *buf;
    size_t len, cap;
    double due;
};

static struct conn *conns;
static int nconns, open_conns, nbusy;
static int *idle, nidle;
static long err_connect, err_read, err_write, err_status;
static int port, epfd;
static char **reqs;
static size_t *req_lens;
static long npaths;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Open a connection into a free slot: its index, or -1. */
static int connect_one(void) {
    int slot = -1;
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd < 0) {
            slot = i;
            break;
        }
    if (slot < 0) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        err_connect++;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)slot};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    conns[slot].fd = fd;
    conns[slot].busy = 0;
    conns[slot].len = 0;
    open_conns++;
    return slot;
}

static void drop(int i) {
    struct conn *c = &conns[i];
    if (c->fd < 0) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->busy) nbusy--;
    c->busy = 0;
    c->len = 0;
    open_conns--;
    for (int k = 0; k < nidle; k++)
        if (idle[k] == i) {
            idle[k] = idle[--nidle];
            break;
        }
}

static int next_connection(void) {
    if (nidle) return idle[--nidle];
    if (open_conns < nconns) return connect_one();
    return -1;
}

static int send_request(int i, long k, double due) {
    struct conn *c = &conns[i];
    const char *r = reqs[k % npaths];
    size_t n = req_lens[k % npaths];
    ssize_t sent = send(c->fd, r, n, MSG_NOSIGNAL);
    if (sent != (ssize_t)n) { /* a small request into an empty socket buffer: all or broken */
        err_write++;
        drop(i);
        return 0;
    }
    c->due = due;
    c->busy = 1;
    nbusy++;
    return 1;
}

/* A header line of head[0:end] named ``name`` (lower case, with its colon): its value, or NULL. */
static const char *header(const char *head, size_t end, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = memmem(head, end, "\r\n", 2); p && p + 2 + nl <= head + end;
         p = memmem(p + 2, (size_t)(head + end - (p + 2)), "\r\n", 2)) {
        if (strncasecmp(p + 2, name, nl) == 0) return p + 2 + nl;
    }
    return NULL;
}

/* Bytes of the first complete response in buf, 0 while incomplete, -1 when unreadable
 * (as fixedrate.py's response_length). */
static long response_length(const char *buf, size_t len) {
    const char *e = memmem(buf, len, "\r\n\r\n", 4);
    if (!e) return len < MAX_RESPONSE ? 0 : -1;
    size_t end = (size_t)(e - buf);
    if (end < 12 || strncasecmp(buf, "http/1.", 7) != 0) return -1;
    const char *v = header(buf, end, "content-length:");
    if (v) {
        char *stop;
        long length = strtol(v, &stop, 10);
        if (stop == v || length < 0) return -1;
        size_t total = end + 4 + (size_t)length;
        return len >= total ? (long)total : 0;
    }
    const char *te = header(buf, end, "transfer-encoding:");
    if (te) {
        const char *k = memmem(buf + end, len - end, "\r\n0\r\n\r\n", 7);
        if (k) return (long)(k - buf) + 7;
        if (len >= end + 9 && memcmp(buf + end + 4, "0\r\n\r\n", 5) == 0) return (long)end + 9;
        return 0;
    }
    if (memcmp(buf + 9, "204", 3) == 0 || memcmp(buf + 9, "304", 3) == 0 || buf[9] == '1') return (long)end + 4;
    return -1; /* a body delimited by close: not something a keep-alive benchmark can time */
}

static int closing(const char *buf, size_t n) {
    const char *e = memmem(buf, n, "\r\n\r\n", 4);
    const char *v = header(buf, e ? (size_t)(e - buf) : n, "connection:");
    while (v && (*v == ' ' || *v == '\t')) v++;
    return v && strncasecmp(v, "close", 5) == 0;
}

static void wait_ready(double timeout, struct epoll_event *events, int *n) {
    *n = epoll_wait(epfd, events, MAX_EVENTS, 0);
    if (*n > 0) return;
    /* epoll_wait's timeout rounds to milliseconds: sleep in ppoll on the epoll descriptor */
    struct timespec ts = {.tv_sec = (time_t)timeout, .tv_nsec = (long)((timeout - (long)timeout) * 1e9)};
    struct pollfd p = {.fd = epfd, .events = POLLIN};
    ppoll(&p, 1, &ts, NULL);
    *n = epoll_wait(epfd, events, MAX_EVENTS, 0);
    if (*n < 0) *n = 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s PORT RATE DURATION_S CONNECTIONS GRACE_S PATHS_FILE\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    double rate = atof(argv[2]), duration = atof(argv[3]), grace = atof(argv[5]);
    nconns = atoi(argv[4]);
    if (port <= 0 || rate <= 0 || duration <= 0 || nconns < 1) {
        fprintf(stderr, "PORT, RATE, DURATION_S and CONNECTIONS must be positive\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* A sleep until the next request is due may end up to the timer slack late (50 µs by
     * default), and that lateness would be in every sample: ask for 1 µs. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    FILE *f = fopen(argv[6], "r");
    if (!f) {
        perror(argv[6]);
        return 2;
    }
    char line[8192];
    long cap = 16;
    reqs = malloc(sizeof *reqs * cap);
    req_lens = malloc(sizeof *req_lens * cap);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (npaths == cap) {
            cap *= 2;
            reqs = realloc(reqs, sizeof *reqs * cap);
            req_lens = realloc(req_lens, sizeof *req_lens * cap);
        }
        int n = asprintf(&reqs[npaths], "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", line, port);
        req_lens[npaths++] = (size_t)n;
    }
    fclose(f);
    if (!npaths) {
        req_lens[0] = (size_t)asprintf(&reqs[0], "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
        npaths = 1;
    }
    long total = (long)(rate * duration);
    if (total < 1) total = 1;
    epfd = epoll_create1(0);
    conns = calloc((size_t)nconns, sizeof *conns);
    idle = malloc(sizeof *idle * (size_t)nconns);
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].cap = 4096;
        conns[i].buf = malloc(conns[i].cap);
    }
    for (int i = 0; i < nconns; i++) {
        int s = connect_one();
        if (s >= 0) idle[nidle++] = s;
    }
    double *latency = malloc(sizeof(double) * (size_t)total), *lag = malloc(sizeof(double) * (size_t)total);
    long *bq_k = malloc(sizeof(long) * (size_t)total); /* the backlog: (request, due), a FIFO */
    double *bq_due = malloc(sizeof(double) * (size_t)total);
    long bq_head = 0, bq_tail = 0, nlat = 0, nlag = 0, queued = 0, issued = 0;
    struct epoll_event events[MAX_EVENTS];
    double start = now(), stop_at = start + duration + grace;
    if (!open_conns) { /* as fixedrate.py: nothing was sent */
        printf("counts %ld 0 0 %ld 0 0 0 0\nlatency_us\nsend_lag_us\n", total, err_connect);
        return 0;
    }
    for (;;) {
        double t = now();
        while (issued < total && start + issued / rate <= t) {
            double due = start + issued / rate;
            int c = next_connection();
            if (c >= 0 && send_request(c, issued, due)) {
                lag[nlag++] = (now() - due) * 1e6;
            } else {
                bq_k[bq_tail] = issued;
                bq_due[bq_tail++] = due;
                queued++;
            }
            issued++;
        }
        if (issued >= total && !nbusy && bq_head == bq_tail) break;
        if (t >= stop_at) break;
        double wait = issued < total ? start + issued / rate - t : stop_at - t;
        if (wait > 0.05) wait = 0.05;
        if (wait < 0) wait = 0;
        int n;
        wait_ready(wait, events, &n);
        for (int e = 0; e < n; e++) {
            int i = (int)events[e].data.u32;
            struct conn *c = &conns[i];
            if (c->fd < 0) continue;
            if (!c->busy) { /* readable while idle: the server closed it */
                drop(i);
                continue;
            }
            if (c->cap - c->len < 65536) {
                c->cap = c->len + 65536;
                c->buf = realloc(c->buf, c->cap);
            }
            ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
            if (got < 0 && errno == EAGAIN) continue;
            if (got <= 0) {
                err_read++;
                drop(i);
                continue;
            }
            c->len += (size_t)got;
            long rn = response_length(c->buf, c->len);
            if (rn == 0) continue;
            double done = now();
            if (rn < 0) {
                err_read++;
                drop(i);
                continue;
            }
            if (strncmp(c->buf, "HTTP/1.1 2", 10) != 0 && strncmp(c->buf, "HTTP/1.0 2", 10) != 0) err_status++;
            latency[nlat++] = (done - c->due) * 1e6;
            int close_it = closing(c->buf, (size_t)rn);
            memmove(c->buf, c->buf + rn, c->len - (size_t)rn);
            c->len -= (size_t)rn;
            c->busy = 0;
            nbusy--;
            int next = i;
            if (close_it) {
                drop(i);
                next = next_connection();
            }
            if (bq_head < bq_tail && next >= 0) {
                if (send_request(next, bq_k[bq_head], bq_due[bq_head])) bq_head++;
            } else if (next >= 0) {
                idle[nidle++] = next;
            }
        }
        while (bq_head < bq_tail && (nidle || open_conns < nconns)) {
            int c = next_connection();
            if (c < 0 || !send_request(c, bq_k[bq_head], bq_due[bq_head])) break;
            bq_head++;
        }
    }
    long timeouts = nbusy + (bq_tail - bq_head) + (total - issued);
    printf("counts %ld %ld %ld %ld %ld %ld %ld %ld\n", total, nlat, queued, err_connect, err_read, err_write,
           err_status, timeouts);
    printf("latency_us");
    for (long k = 0; k < nlat; k++) printf(" %.3f", latency[k]);
    printf("\nsend_lag_us");
    for (long k = 0; k < nlag; k++) printf(" %.3f", lag[k]);
    printf("\n");
    return 0;
}
