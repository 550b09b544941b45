/* SPDX-License-Identifier: MIT */
/* vmm/main.c — precopy-vmm: a minimal KVM VMM that live-migrates its guest
 * to another precopy-vmm over TCP with libprecopy deciding (docs/vmm.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <precopy.h>

#include "vmm.h"

_Atomic int vmm_quit;
int vmm_quiet;

extern const uint8_t vmm_guest_sweep[512], vmm_guest_idle[512], vmm_guest_random[512];

uint64_t vmm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vmm_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull) };

	/* an interrupted sleep returns early: every caller re-checks its time */
	nanosleep(&ts, NULL);
}

void vmm_err(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "precopy-vmm: %s\n", buf);
}

void vmm_info(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (vmm_quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "precopy-vmm: %s\n", buf);
}

void vmm_trace(uint64_t since, const char *what)
{
	static int on = -1;

	if (on < 0)
		on = getenv("PRECOPY_VMM_TRACE") != NULL;
	if (on)
		fprintf(stderr, "precopy-vmm: trace %+.3f ms: %s\n", (double)(vmm_now_ns() - since) / 1e6, what);
}

static uint8_t file_image[0xa0000 - VMM_BOOT_GPA];

int vmm_guest_lookup(const char *name, const uint8_t **image, size_t *len)
{
	static const struct {
		const char *name;
		const uint8_t *image;
	} builtin[] = { { "sweep", vmm_guest_sweep }, { "idle", vmm_guest_idle }, { "random", vmm_guest_random } };
	size_t got = 0;
	int fd;

	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
		if (!strcmp(name, builtin[i].name)) {
			*image = builtin[i].image;
			*len = 512;
			return 0;
		}
	}
	do
		fd = open(name, O_RDONLY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		vmm_err("--guest %s: not a built-in guest (sweep, idle, random) and not a readable file: %s", name,
			strerror(errno));
		return -errno;
	}
	for (;;) {
		ssize_t n = read(fd, file_image + got, sizeof(file_image) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			vmm_err("reading the guest image %s: %s", name, strerror(errno));
			close(fd);
			return -EIO;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == sizeof(file_image)) {
			vmm_err("the guest image %s is larger than the %zu bytes below 0xa0000", name, sizeof(file_image));
			close(fd);
			return -E2BIG;
		}
	}
	close(fd);
	if (!got) {
		vmm_err("the guest image %s is empty", name);
		return -EINVAL;
	}
	*image = file_image;
	*len = got;
	return 0;
}

int vmm_guest_params(const struct vmm_opts *o, uint64_t mem, uint32_t params[4])
{
	uint64_t start = o->work_start ? o->work_start : 1u << 20;
	uint64_t size = o->work_size ? o->work_size : (mem > start ? mem - start : 0);

	if (start % VMM_PAGE || size % VMM_PAGE || start < 0x10000 || !size || start + size > mem ||
	    start + size > 0xffffffffull) {
		vmm_err("the guest's work range [%#llx, %#llx) must be page aligned, above 64 KiB and inside its "
			"%llu bytes of RAM", (unsigned long long)start, (unsigned long long)(start + size),
			(unsigned long long)mem);
		return -EINVAL;
	}
	params[0] = (uint32_t)start;
	params[1] = (uint32_t)(start + size);
	params[2] = o->every ? o->every : 1;
	params[3] = 0x2545f491u;
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 0: break;
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: precopy-vmm [--guest NAME|FILE] [--mem SIZE] [--migrate-to tcp:HOST:PORT | --incoming tcp:HOST:PORT] [options]\n"
		"\n"
		"A minimal KVM VMM (one vCPU, one RAM slot, a serial port at 0x3f8) that\n"
		"live-migrates its guest to another precopy-vmm, libprecopy deciding when to\n"
		"switch over. Guests: sweep (one byte in every page of a range, for ever),\n"
		"random (xorshift pages of a range), idle (halts), or a boot-sector FILE\n"
		"loaded at 0x7c00.\n"
		"\n"
		"  --guest NAME|FILE      the guest (default sweep)\n"
		"  --mem SIZE             guest RAM (default 64M; K, M, G: powers of 1024)\n"
		"  --work-start SIZE      start of the guest's work range (default 1M)\n"
		"  --work-size SIZE       its size (default: to the end of RAM)\n"
		"  --marker-every N       a serial line every N passes / batches (default 16)\n"
		"  --migrate-to tcp:H:P   migrate to a destination listening there\n"
		"  --incoming tcp:H:P     be the destination: listen there\n"
		"  --max-bandwidth SIZE   cap on everything sent, bytes per second (default 1G; 0: none)\n"
		"  --downtime-limit MS    the downtime limit (default 300)\n"
		"  --auto-converge        let the engine throttle the vCPU\n"
		"  --dirty-log MODE       classic, manual or ring (default classic)\n"
		"  --timeout S            give up (cancel) after S seconds of migration (default 60;\n"
		"                         destination: wait S seconds for the source)\n"
		"  --delay MS             run the guest this long before migrating (default 300)\n"
		"  --run-for MS           destination (or without --migrate-to): run the guest this\n"
		"                         long, then exit 0 (default: until SIGINT / SIGTERM)\n"
		"  --verify               send a digest of guest RAM at the stop; the destination\n"
		"                         checks it and exits 4 on a mismatch\n"
		"  --prealloc             populate guest RAM at start\n"
		"  --serial FILE          guest serial output (default stdout)\n"
		"  --json[=FILE]          a query-migrate style JSON summary (default stdout)\n"
		"  --io-timeout MS        longest wait without progress on the connection (default 10000)\n"
		"  --device vfio-user:SOCKET[,stop-copy=SIZE]\n"
		"                         attach the vfio-user device server listening on SOCKET\n"
		"                         (repeatable, up to 8; guest RAM goes in a memfd the servers\n"
		"                         map); the devices migrate with the guest; a destination\n"
		"                         names its own servers, matched to the source's in order.\n"
		"                         stop-copy: the device's state at the stop, for the\n"
		"                         downtime estimate (vfio-user cannot tell it)\n"
		"  --quiet                no progress or summary lines on stderr\n"
		"  --help\n"
		"\n"
		"Exit status: 0 done; 1 error; 2 usage; 3 (source) the migration failed or was\n"
		"cancelled and the guest runs on the source; 4 (destination) RAM digest mismatch.\n");
}

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&vmm_quit, 1);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "guest", required_argument, 0, 'g' },       { "mem", required_argument, 0, 'm' },
		{ "work-start", required_argument, 0, 'S' },  { "work-size", required_argument, 0, 'Z' },
		{ "marker-every", required_argument, 0, 'n' }, { "migrate-to", required_argument, 0, 't' },
		{ "incoming", required_argument, 0, 'i' },    { "max-bandwidth", required_argument, 0, 'b' },
		{ "downtime-limit", required_argument, 0, 'l' }, { "auto-converge", no_argument, 0, 'a' },
		{ "dirty-log", required_argument, 0, 'd' },   { "timeout", required_argument, 0, 'T' },
		{ "delay", required_argument, 0, 'D' },       { "run-for", required_argument, 0, 'r' },
		{ "verify", no_argument, 0, 'v' },            { "prealloc", no_argument, 0, 'p' },
		{ "serial", required_argument, 0, 's' },      { "json", optional_argument, 0, 'j' },
		{ "io-timeout", required_argument, 0, 'I' },  { "quiet", no_argument, 0, 'q' },
		{ "device", required_argument, 0, 'V' },
		{ "help", no_argument, 0, 'h' },              { 0, 0, 0, 0 },
	};
	struct vmm_opts o = { .guest = "sweep", .mem = 64u << 20, .every = 16, .max_bw = 1u << 30, .limit_ms = 300,
			      .dirty_log = PRECOPY_KVM_LOG_CLASSIC, .timeout_s = 60, .delay_ms = 300,
			      .io_timeout_ms = 10000 };
	struct sigaction sa;
	uint64_t v;
	int c, mem_given = 0;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'g': o.guest = optarg; break;
		case 'm': case 'S': case 'Z': case 'b':
			if (parse_size(optarg, &v) < 0) {
				vmm_err("%s: not a size", optarg);
				return VMM_EXIT_USAGE;
			}
			if (c == 'm') o.mem = v, mem_given = 1;
			else if (c == 'S') o.work_start = v;
			else if (c == 'Z') o.work_size = v;
			else o.max_bw = v;
			break;
		case 'n': case 'l': case 'T': case 'D': case 'r': case 'I': {
			char *end;
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end) {
				vmm_err("%s: not a number", optarg);
				return VMM_EXIT_USAGE;
			}
			if (c == 'n') o.every = (uint32_t)v;
			else if (c == 'l') o.limit_ms = v;
			else if (c == 'T') o.timeout_s = v;
			else if (c == 'D') o.delay_ms = v;
			else if (c == 'r') o.run_for_ms = v;
			else o.io_timeout_ms = v;
			break;
		}
		case 't': o.migrate_to = optarg; break;
		case 'i': o.incoming = optarg; break;
		case 'a': o.auto_converge = 1; break;
		case 'd':
			if (!strcmp(optarg, "classic")) o.dirty_log = PRECOPY_KVM_LOG_CLASSIC;
			else if (!strcmp(optarg, "manual")) o.dirty_log = PRECOPY_KVM_LOG_MANUAL;
			else if (!strcmp(optarg, "ring")) o.dirty_log = PRECOPY_KVM_LOG_RING;
			else {
				vmm_err("--dirty-log %s: classic, manual or ring", optarg);
				return VMM_EXIT_USAGE;
			}
			break;
		case 'v': o.verify = 1; break;
		case 'p': o.prealloc = 1; break;
		case 's': o.serial = optarg; break;
		case 'j': o.json = 1; o.json_path = optarg; break;
		case 'q': vmm_quiet = 1; break;
		case 'V':
			if (strncmp(optarg, "vfio-user:", 10) || !optarg[10]) {
				vmm_err("--device %s: expected vfio-user:SOCKET", optarg);
				return VMM_EXIT_USAGE;
			}
			if (o.ndevices == VMM_MAX_DEVICES) {
				vmm_err("--device: at most %u devices", VMM_MAX_DEVICES);
				return VMM_EXIT_USAGE;
			}
			{
				/* vfio-user:PATH[,stop-copy=SIZE] */
				char *comma = strrchr(optarg + 10, ',');
				o.device_hints[o.ndevices] = 0;
				if (comma && !strncmp(comma, ",stop-copy=", 11)) {
					if (parse_size(comma + 11, &v) < 0 || !v) {
						vmm_err("--device %s: stop-copy=SIZE, a size above 0", optarg);
						return VMM_EXIT_USAGE;
					}
					*comma = 0;
					o.device_hints[o.ndevices] = v;
				}
			}
			o.devices[o.ndevices++] = optarg + 10;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return VMM_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		vmm_err("unexpected argument %s", argv[optind]);
		return VMM_EXIT_USAGE;
	}
	if (o.migrate_to && o.incoming) {
		vmm_err("--migrate-to and --incoming exclude each other");
		return VMM_EXIT_USAGE;
	}
	for (int k = 0; k < 2; k++) {
		const char *spec = k ? o.incoming : o.migrate_to;
		const char *colon = spec ? strrchr(spec, ':') : NULL;
		if (spec && (strncmp(spec, "tcp:", 4) || colon <= spec + 4 || !colon[1])) {
			vmm_err("%s %s: expected tcp:HOST:PORT", k ? "--incoming" : "--migrate-to", spec);
			return VMM_EXIT_USAGE;
		}
	}
	if (o.mem < (1u << 20) || o.mem % VMM_PAGE || o.mem > (3ull << 30)) {
		vmm_err("--mem: from 1M to 3G, a multiple of 4 KiB");
		return VMM_EXIT_USAGE;
	}
	if (!o.limit_ms || !o.every || !o.io_timeout_ms) {
		vmm_err("--downtime-limit, --marker-every and --io-timeout must be > 0");
		return VMM_EXIT_USAGE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (o.incoming) {
		if (!mem_given)
			o.mem = 0; /* take the source's */
		return vmm_dest(&o);
	}
	return vmm_source(&o);
}
