/*
 * A minimal C node on OTP's own libei (erl_interface), for erldist's
 * tests: it registers with EPMD (ei_publish), accepts connections
 * (ei_accept, one forked child per connection), reads with
 * ei_xreceive_msg and answers `$gen_call`s to `net_kernel` (ping's
 * is_auth: `yes`) and `rex` (rpc's {call, M, F, A, GL}: {cnode_rpc, M, F}).
 *
 * It reports on stdout, one line each:
 *   ready NODE PORT        once published
 *   connected PEER         per accepted connection
 *   op N                   every control message received, read from the
 *                          wire (MSG_PEEK) before libei sees it, so an op
 *                          libei rejects is reported too
 *   got NAME TERM          a message that is not a $gen_call
 *   replied NAME           a $gen_call answered
 *   closed PEER ERRNO      ei_xreceive_msg failed (EOF, or a message
 *                          libei could not take: then the node drops the
 *                          connection, as libei C nodes do)
 *
 * Usage: cnode ALIVE COOKIE   (EPMD port from ERL_EPMD_PORT, as libei reads it)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ei.h"

/* Reports the op of the next packet without consuming it. Returns 0 at EOF. */
static int peek_op(int fd)
{
    unsigned char hdr[4];
    if (recv(fd, hdr, 4, MSG_PEEK | MSG_WAITALL) != 4)
        return 0;
    unsigned long len = ((unsigned long)hdr[0] << 24) | (hdr[1] << 16) | (hdr[2] << 8) | hdr[3];
    if (len == 0)
        return 1; /* a tick */
    char buf[68];
    size_t want = 4 + (len < 64 ? len : 64);
    ssize_t got = recv(fd, buf, want, MSG_PEEK | MSG_WAITALL);
    if (got != (ssize_t)want)
        return 0;
    if ((unsigned char)buf[4] != 112) { /* not a pass-through message */
        printf("op unparsed-%d\n", (unsigned char)buf[4]);
        return 1;
    }
    int i = 5, v, arity;
    long op;
    if (ei_decode_version(buf, &i, &v) == 0 && ei_decode_tuple_header(buf, &i, &arity) == 0
        && ei_decode_long(buf, &i, &op) == 0)
        printf("op %ld\n", op);
    else
        printf("op unparsed\n");
    return 1;
}

/* Answers {'$gen_call', {From, Tag}, Request} sent to `to`. */
static int answer_call(int fd, const char *to, const char *buf, int i)
{
    int arity, v;
    char atom[MAXATOMLEN_UTF8];
    erlang_pid from;
    if (ei_decode_tuple_header(buf, &i, &arity) || arity != 3 || ei_decode_atom(buf, &i, atom)
        || strcmp(atom, "$gen_call") || ei_decode_tuple_header(buf, &i, &arity) || arity != 2
        || ei_decode_pid(buf, &i, &from))
        return 0;
    int tag = i;
    if (ei_skip_term(buf, &i))
        return 0;
    int tag_len = i - tag;

    ei_x_buff r;
    ei_x_new_with_version(&r);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_append_buf(&r, buf + tag, tag_len);
    char m[MAXATOMLEN_UTF8], f[MAXATOMLEN_UTF8];
    if (!strcmp(to, "net_kernel")) {
        ei_x_encode_atom(&r, "yes");
    } else if (!strcmp(to, "rex") && !ei_decode_tuple_header(buf, &i, &arity) && arity == 5
               && !ei_decode_atom(buf, &i, atom) && !strcmp(atom, "call")
               && !ei_decode_atom(buf, &i, m) && !ei_decode_atom(buf, &i, f)) {
        ei_x_encode_tuple_header(&r, 3);
        ei_x_encode_atom(&r, "cnode_rpc");
        ei_x_encode_atom(&r, m);
        ei_x_encode_atom(&r, f);
    } else {
        ei_x_encode_tuple_header(&r, 2);
        ei_x_encode_atom(&r, "error");
        ei_x_encode_atom(&r, "not_supported");
    }
    (void)v;
    int rc = ei_send(fd, &from, r.buff, r.index);
    ei_x_free(&r);
    if (rc < 0)
        printf("reply-failed %s %d\n", to, erl_errno);
    else
        printf("replied %s\n", to);
    return 1;
}

static void serve(int fd, const char *peer)
{
    ei_x_buff x;
    ei_x_new(&x);
    printf("connected %s\n", peer);
    for (;;) {
        erlang_msg msg;
        if (!peek_op(fd)) {
            /* EOF: let libei see it too. */
        }
        x.index = 0;
        int r = ei_xreceive_msg(fd, &msg, &x);
        if (r == ERL_TICK)
            continue;
        if (r == ERL_ERROR) {
            printf("closed %s %d\n", peer, erl_errno);
            break;
        }
        const char *to = msg.msgtype == ERL_REG_SEND ? msg.toname : "pid";
        int i = 0, v;
        if (msg.msgtype != ERL_REG_SEND && msg.msgtype != ERL_SEND)
            continue;
        if (ei_decode_version(x.buff, &i, &v))
            continue;
        if (!answer_call(fd, to, x.buff, i)) {
            printf("got %s ", to);
            ei_print_term(stdout, x.buff, &i);
            printf("\n");
        }
    }
    ei_x_free(&x);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: cnode ALIVE COOKIE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (ei_init()) {
        fprintf(stderr, "ei_init failed\n");
        return 1;
    }
    char node[512];
    snprintf(node, sizeof node, "%s@localhost", argv[1]);
    struct in_addr addr;
    addr.s_addr = htonl(INADDR_LOOPBACK);
    ei_cnode ec;
    /* The xinit form of ei_connect_init, to be named ALIVE@localhost
       whatever this machine's host name. */
    if (ei_connect_xinit(&ec, "localhost", argv[1], node, &addr, argv[2], 0) < 0) {
        fprintf(stderr, "ei_connect_xinit failed: %d\n", erl_errno);
        return 1;
    }
    int port = 0;
    int lfd = ei_xlisten(&ec, &addr, &port, 16);
    if (lfd < 0) {
        fprintf(stderr, "ei_xlisten failed: %d\n", erl_errno);
        return 1;
    }
    int pfd = ei_publish(&ec, port);
    if (pfd < 0) {
        fprintf(stderr, "ei_publish failed: %d\n", erl_errno);
        return 1;
    }
    signal(SIGCHLD, SIG_IGN);
    printf("ready %s %d\n", node, port);
    for (;;) {
        ErlConnect conp;
        int fd = ei_accept(&ec, lfd, &conp);
        if (fd < 0) {
            printf("accept-failed %d\n", erl_errno);
            continue;
        }
        pid_t child = fork();
        if (child == 0) {
            close(lfd);
            close(pfd);
            /* Go when the test stops the parent. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            serve(fd, conp.nodename);
            _exit(0);
        }
        close(fd);
    }
}
