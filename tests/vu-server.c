/* SPDX-License-Identifier: MIT */
/* vu-server — the tests' vfio-user device server (tests/lib/vu_server.c)
 * as a program: it listens on a UNIX socket, serves the first client that
 * connects until it leaves, and exits (0, or 2 on a protocol error). For
 * precopy-vmm --device vfio-user:SOCKET, by hand or from a test.
 *
 * The socket appears at its path only once it listens (bound under a
 * temporary name, then renamed): a client that finds the path can
 * connect. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/vu_server.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vu-server SOCKET [options]\n"
		"\n"
		"A vfio-user device server (a PCI device with a 4 KiB BAR0, migration with\n"
		"PRE_COPY, DMA logging) for one client on the UNIX socket SOCKET.\n"
		"\n"
		"  --seed N             the device state pattern's seed (default 1)\n"
		"  --state-bytes SIZE   pattern bytes in the device state (default 1M)\n"
		"  --precopy-bytes SIZE stream bytes readable in PRE_COPY (default 256K)\n"
		"  --dma IOVA:LEN       write guest memory [IOVA, IOVA+LEN) by DMA while the\n"
		"                       device runs (through the client's memory mapping); the\n"
		"                       range is device state: a server that loads it from a\n"
		"                       migration goes on writing there, and checks first that\n"
		"                       every page written so far arrived\n"
		"  --dma-every MS       a DMA burst every MS ms (default 10; 0: never)\n"
		"  --dma-pages N        pages per burst (default 16)\n"
		"  --dma-unlogged       a broken device: that DMA is not in its DMA log\n"
		"  --state-out FILE     the device state stream saved or loaded, whole\n"
		"  --report FILE        at exit: state bytes, DMA pages written / checked / bad\n"
		"  --no-twin            refuse twin-socket mode\n"
		"  --help\n"
		"\n"
		"SIZE takes K, M, G (powers of 1024); numbers may be hexadecimal (0x...).\n");
}

static int num(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seed", required_argument, 0, 's' },      { "state-bytes", required_argument, 0, 'b' },
		{ "precopy-bytes", required_argument, 0, 'p' }, { "dma", required_argument, 0, 'd' },
		{ "dma-every", required_argument, 0, 'e' }, { "dma-pages", required_argument, 0, 'n' },
		{ "state-out", required_argument, 0, 'o' }, { "report", required_argument, 0, 'r' },
		{ "no-twin", no_argument, 0, 't' },         { "dma-unlogged", no_argument, 0, 'u' },         { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct vu_server_cfg cfg = { .seed = 1, .state_bytes = 1u << 20, .precopy_bytes = 256u << 10, .twin = 1,
				     .auto_ms = 10, .auto_pages = 16 };
	struct sockaddr_un a = { .sun_family = AF_UNIX }, t = { .sun_family = AF_UNIX };
	uint64_t v;
	int c, l, fd;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *colon;

		switch (c) {
		case 'd':
			colon = strchr(optarg, ':');
			if (!colon || (*colon = 0, num(optarg, &cfg.auto_iova)) || num(colon + 1, &cfg.auto_len) ||
			    cfg.auto_iova % 4096 || cfg.auto_len < 4096) {
				fprintf(stderr, "vu-server: --dma IOVA:LEN, page aligned, LEN >= 4096\n");
				return 2;
			}
			break;
		case 's': case 'b': case 'p': case 'e': case 'n':
			if (num(optarg, &v)) {
				fprintf(stderr, "vu-server: %s: not a number\n", optarg);
				return 2;
			}
			if (c == 's') cfg.seed = v;
			else if (c == 'b') cfg.state_bytes = v;
			else if (c == 'p') cfg.precopy_bytes = v;
			else if (c == 'e') cfg.auto_ms = (unsigned)v;
			else cfg.auto_pages = (unsigned)v;
			break;
		case 'o': cfg.state_path = optarg; break;
		case 'r': cfg.report_path = optarg; break;
		case 't': cfg.twin = 0; break;
		case 'u': cfg.auto_unlogged = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	if (strlen(argv[optind]) + 5 >= sizeof(a.sun_path)) {
		fprintf(stderr, "vu-server: %s: longer than a UNIX socket path\n", argv[optind]);
		return 2;
	}
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[optind]);
	snprintf(t.sun_path, sizeof(t.sun_path), "%s.tmp", argv[optind]);
	signal(SIGPIPE, SIG_IGN);
	unlink(t.sun_path);
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&t, sizeof(t)) || listen(l, 1) || rename(t.sun_path, a.sun_path)) {
		fprintf(stderr, "vu-server: listening on %s: %s\n", a.sun_path, strerror(errno));
		unlink(t.sun_path);
		return 1;
	}
	do
		fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	close(l);
	unlink(a.sun_path);
	if (fd < 0) {
		fprintf(stderr, "vu-server: accept on %s: %s\n", a.sun_path, strerror(errno));
		return 1;
	}
	return vu_server_run(fd, &cfg);
}
