/* SPDX-License-Identifier: MIT */
/* precopy-vmm end to end: two precopy-vmm processes (build/precopy-vmm,
 * found beside this test's directory) migrate a real KVM guest over
 * loopback TCP.
 *
 * - a 64 MiB sweep guest under a cap that takes several iterations (with
 *   auto-converge, so that the time is bounded), in each dirty-log mode
 *   (classic, manual, ring): both exit 0, --verify's
 *   RAM digest matches on the destination, the JSON says "completed" with
 *   more than one iteration, and the destination's serial markers carry on
 *   past the source's last one (the guest's pass count went on);
 * - the destination killed in the middle: the source cancels, its guest
 *   prints again, and it exits 3 ("the guest runs on the source");
 * - the source killed in the middle: the destination exits 1 naming the
 *   closed connection, and its guest never started (no serial output);
 * - garbage on the destination's socket: it exits 1 naming the bad frame;
 * - one page corrupted in flight (the source's PRECOPY_VMM_FAULT=flip-page):
 *   --verify catches it, the destination exits 4 without starting its
 *   guest, the source resumes its own and exits 3;
 * - vfio-user devices (--device, build/tests/vu-server processes, one or
 *   two on each side) writing guest RAM by DMA while the guest runs: the
 *   migration completes with --verify, each destination server loaded a
 *   state byte-equal to what its source server saved and found every page
 *   its source wrote by DMA (the RAM digest covers them too); a server
 *   whose DMA is not logged is caught by --verify (the negative control);
 *   a source server killed mid-migration: the source resumes its guest and
 *   exits 3 naming the device; a destination server killed: the
 *   destination exits 1 naming it, at once, and the source resumes; a destination without the source's devices
 *   refuses by name; with one device, `,stop-copy=SIZE` reaches the
 *   engine's decisions; a bad hint is a usage error, a missing server an
 *   error naming it.
 *
 * Skipped with a message where /dev/kvm is absent or KVM_CREATE_VM fails.
 * No timing is asserted (the machine is shared): only outcomes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

struct proc {
	pid_t pid;
	char out[PATH_MAX], err[PATH_MAX];
};

static char dir[128];

static void skip_without_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;

	if (fd < 0)
		cr_skip_test("/dev/kvm unavailable (%s): precopy-vmm tests skipped", strerror(errno));
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		int e = errno;
		close(fd);
		cr_skip_test("KVM_CREATE_VM failed (%s): precopy-vmm tests skipped", strerror(e));
	}
	close(vm);
	close(fd);
}

/* BUILD/tests/test-vmm -> BUILD/precopy-vmm, or with server set,
 * BUILD/tests/vu-server */
static void exe_path(char *buf, size_t len, int server)
{
	char self[PATH_MAX - 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	cr_assert_gt(n, 0);
	self[n] = 0;
	slash = strrchr(self, '/');
	cr_assert_not_null(slash);
	*slash = 0;
	if (server) {
		snprintf(buf, len, "%s/vu-server", self);
		cr_assert_eq(access(buf, X_OK), 0, "%s not built (make %s)", buf, buf);
		return;
	}
	slash = strrchr(self, '/');
	cr_assert_not_null(slash);
	*slash = 0;
	snprintf(buf, len, "%s/precopy-vmm", self);
	cr_assert_eq(access(buf, X_OK), 0, "%s not built (make %s)", buf, buf);
}

static void setup(void)
{
	skip_without_kvm();
	snprintf(dir, sizeof(dir), "/tmp/precopy-vmm-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			cr_log_warn("could not remove %s", dir);
	}
	dir[0] = 0;
}

TestSuite(vmm, .init = setup, .fini = teardown, .timeout = 90);

/* A free loopback port (bound, read back, released). */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Start precopy-vmm with args (NULL-terminated), stdout and stderr into
 * files named after `name`. */
static const char *spawn_env; /* NAME=VALUE for the next spawn, or NULL */

static void spawn_exe(struct proc *p, const char *name, const char *const *args, int server)
{
	char exe[PATH_MAX + 32];
	const char *argv[40];
	int n = 0;

	exe_path(exe, sizeof(exe), server);
	snprintf(p->out, sizeof(p->out), "%s/%s.out", dir, name);
	snprintf(p->err, sizeof(p->err), "%s/%s.err", dir, name);
	argv[n++] = exe;
	for (int i = 0; args[i] && n < 39; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	p->pid = fork();
	cr_assert_geq(p->pid, 0);
	if (p->pid == 0) {
		int o = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		if (spawn_env && putenv((char *)spawn_env) != 0)
			_exit(126);
		execv(exe, (char *const *)argv);
		_exit(127);
	}
}

static void spawn(struct proc *p, const char *name, const char *const *args)
{
	spawn_exe(p, name, args, 0);
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The exit status, or -SIGNAL; kills it (and fails) after timeout_ms. */
static int reap(struct proc *p, uint64_t timeout_ms)
{
	uint64_t end = ms_now() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid)
			break;
		cr_assert_geq(r, 0);
		if (ms_now() > end) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			cr_assert_fail("precopy-vmm (pid %d, %s) still running after %llu ms", p->pid, p->err,
				       (unsigned long long)timeout_ms);
		}
		usleep(10000);
	}
	p->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	cr_assert_not_null(buf);
	if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = 0;
	fclose(f);
	return buf;
}

/* Pass counts of the "sweep XXXXXXXX" serial lines: first and last, -1 if none. */
static void markers(const char *path, long *first, long *last, int *count)
{
	char *s = slurp(path), *line = s;

	*first = *last = -1;
	*count = 0;
	while (line && *line) {
		char *nl = strchr(line, '\n');
		unsigned long v;
		if (nl)
			*nl = 0;
		if (sscanf(line, "sweep %lx", &v) == 1) {
			if (*first < 0)
				*first = (long)v;
			*last = (long)v;
			(*count)++;
		}
		line = nl ? nl + 1 : NULL;
	}
	free(s);
}

static void dump(const struct proc *p)
{
	char *e = slurp(p->err);
	cr_log_info("%s:\n%s", p->err, e);
	free(e);
}

/* Skip where the kernel lacks the dirty-log mode. */
static void skip_without_mode(const char *mode)
{
	long cap = !strcmp(mode, "ring")     ? KVM_CAP_DIRTY_LOG_RING
		   : !strcmp(mode, "manual") ? KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 : -1;
	int fd, vm, r;

	if (cap < 0)
		return;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	cr_assert_geq(vm, 0);
	r = ioctl(vm, KVM_CHECK_EXTENSION, cap);
	close(vm);
	close(fd);
	if (r <= 0)
		cr_skip_test("this kernel lacks the %s dirty log", mode);
}

static void migrate_ok(const char *mode)
{
	struct proc src, dst;
	char url[64], sser[PATH_MAX], dser[PATH_MAX], json[PATH_MAX];
	long sfirst, slast, dfirst, dlast;
	int scount, dcount, rs, rd;
	char *j, *de;

	skip_without_mode(mode);
	snprintf(url, sizeof(url), "tcp:127.0.0.1:%d", free_port());
	snprintf(sser, sizeof(sser), "%s/src.serial", dir);
	snprintf(dser, sizeof(dser), "%s/dst.serial", dir);
	snprintf(json, sizeof(json), "%s/src.json", dir);
	spawn(&dst, "dst", (const char *const[]){ "--incoming", url, "--serial", dser, "--run-for", "3000",
						  "--timeout", "30", NULL });
	/* 64 MiB, 63 MiB swept, at 150 MiB/s: the first pass alone takes
	 * 0.4 s, while the guest re-dirties what was sent at about the cap;
	 * auto-converge bounds the time (without it, 0.5 to 13 s here) */
	spawn(&src, "src", (const char *const[]){ "--guest", "sweep", "--mem", "64M", "--marker-every", "1",
						  "--migrate-to", url, "--max-bandwidth", "150M", "--downtime-limit",
						  "300", "--dirty-log", mode, "--auto-converge", "--verify", "--serial", sser, "--timeout",
						  "40", "--delay", "1000", "--json", NULL });
	rs = reap(&src, 60000);
	rd = reap(&dst, 30000);
	if (rs || rd) {
		dump(&src);
		dump(&dst);
	}
	cr_assert_eq(rs, 0, "source exit %d", rs);
	cr_assert_eq(rd, 0, "destination exit %d", rd);
	de = slurp(dst.err);
	cr_expect_not_null(strstr(de, "matches the source's"), "no verify line: %s", de);
	free(de);
	j = slurp(src.out);
	cr_expect_not_null(strstr(j, "\"status\":\"completed\""), "JSON: %s", j);
	{
		const char *it = strstr(j, "\"iterations\":");
		cr_assert_not_null(it, "JSON without iterations: %s", j);
		/* how many iterations the cap forces depends on how fast the guest
		 * runs, which a loaded machine changes: reported, not asserted */
		cr_log_info("%s: %d iterations", mode, atoi(it + 13));
	}
	free(j);
	markers(sser, &sfirst, &slast, &scount);
	markers(dser, &dfirst, &dlast, &dcount);
	cr_assert_gt(scount, 0, "no marker on the source");
	cr_assert_gt(dcount, 0, "no marker on the destination");
	cr_expect_gt(dfirst, slast, "the destination's first marker %ld is not past the source's last %ld", dfirst,
		     slast);
	cr_expect_gt(dlast, dfirst, "the destination's guest did not go on (%ld..%ld)", dfirst, dlast);
}

Test(vmm, classic) { migrate_ok("classic"); }
Test(vmm, manual) { migrate_ok("manual"); }
Test(vmm, ring) { migrate_ok("ring"); }

/* Wait until the file holds `needle` (bounded). */
static int wait_for(const char *path, const char *needle, uint64_t timeout_ms)
{
	uint64_t end = ms_now() + timeout_ms;

	while (ms_now() < end) {
		char *s = slurp(path);
		int found = strstr(s, needle) != NULL;
		free(s);
		if (found)
			return 1;
		usleep(20000);
	}
	return 0;
}

Test(vmm, destination_killed)
{
	struct proc src, dst;
	char url[64], sser[PATH_MAX];
	int rs, rd;
	char *e;

	snprintf(url, sizeof(url), "tcp:127.0.0.1:%d", free_port());
	snprintf(sser, sizeof(sser), "%s/src.serial", dir);
	spawn(&dst, "dst", (const char *const[]){ "--incoming", url, "--serial", "/dev/null", "--timeout", "30",
						  "--quiet", NULL });
	/* 20 MiB/s, after the guest ran 1 s (its pages written, not zero): the
	 * first pass alone takes 3 s, so the kill lands inside it */
	spawn(&src, "src", (const char *const[]){ "--guest", "sweep", "--mem", "64M", "--marker-every", "1",
						  "--migrate-to", url, "--max-bandwidth", "20M", "--serial", sser,
						  "--delay", "1000", NULL });
	cr_assert(wait_for(src.err, "migrate:", 20000), "the source never started migrating");
	usleep(300000);
	kill(dst.pid, SIGKILL);
	rd = reap(&dst, 5000);
	cr_expect_eq(rd, -SIGKILL);
	rs = reap(&src, 30000);
	e = slurp(src.err);
	cr_assert_eq(rs, 3, "source exit %d (want 3: guest resumed on the source): %s", rs, e);
	cr_expect_not_null(strstr(e, "the guest runs on the source"), "%s", e);
	cr_expect_not_null(strstr(e, "guest running on the source after the failed migration"),
			   "the guest printed nothing after the failure: %s", e);
	free(e);
}

Test(vmm, source_killed)
{
	struct proc src, dst;
	char url[64], dser[PATH_MAX];
	struct stat st;
	int rs, rd;
	char *e;

	snprintf(url, sizeof(url), "tcp:127.0.0.1:%d", free_port());
	snprintf(dser, sizeof(dser), "%s/dst.serial", dir);
	spawn(&dst, "dst", (const char *const[]){ "--incoming", url, "--serial", dser, "--timeout", "30", NULL });
	spawn(&src, "src", (const char *const[]){ "--guest", "sweep", "--mem", "64M", "--marker-every", "1",
						  "--migrate-to", url, "--max-bandwidth", "20M", "--serial", "/dev/null",
						  "--delay", "1000", NULL });
	cr_assert(wait_for(src.err, "migrate:", 20000), "the source never started migrating");
	usleep(300000);
	kill(src.pid, SIGKILL);
	rs = reap(&src, 5000);
	cr_expect_eq(rs, -SIGKILL);
	rd = reap(&dst, 20000);
	e = slurp(dst.err);
	cr_assert_eq(rd, 1, "destination exit %d: %s", rd, e);
	cr_expect_not_null(strstr(e, "closed the connection before the end of the migration"), "%s", e);
	cr_expect_not_null(strstr(e, "guest not started"), "%s", e);
	free(e);
	cr_assert_eq(stat(dser, &st), 0);
	cr_expect_eq(st.st_size, 0, "the destination's guest printed %lld bytes: it ran", (long long)st.st_size);
}

Test(vmm, garbage)
{
	struct proc dst;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char url[64], junk[4096];
	int port = free_port(), fd = -1, rd;
	uint64_t end;
	char *e;

	snprintf(url, sizeof(url), "tcp:127.0.0.1:%d", port);
	spawn(&dst, "dst", (const char *const[]){ "--incoming", url, "--serial", "/dev/null", "--timeout", "30", NULL });
	a.sin_port = htons((uint16_t)port);
	for (end = ms_now() + 10000; ms_now() < end; usleep(20000)) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert_geq(fd, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		fd = -1;
	}
	cr_assert_geq(fd, 0, "the destination never listened");
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)("GET / HTTP/1.1\r\nHost: x\r\n\r\n"[i % 28]);
	cr_assert_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
	rd = reap(&dst, 20000);
	close(fd);
	e = slurp(dst.err);
	cr_assert_eq(rd, 1, "destination exit %d: %s", rd, e);
	cr_expect_not_null(strstr(e, "not a precopy-vmm migration"), "%s", e);
	free(e);
}

Test(vmm, verify_catches_a_corrupt_page)
{
	struct proc src, dst;
	char url[64], dser[PATH_MAX];
	struct stat st;
	int rs, rd;
	char *e;

	snprintf(url, sizeof(url), "tcp:127.0.0.1:%d", free_port());
	snprintf(dser, sizeof(dser), "%s/dst.serial", dir);
	spawn(&dst, "dst", (const char *const[]){ "--incoming", url, "--serial", dser, "--timeout", "30", NULL });
	spawn_env = "PRECOPY_VMM_FAULT=flip-page";
	spawn(&src, "src", (const char *const[]){ "--guest", "sweep", "--mem", "16M", "--marker-every", "1",
						  "--migrate-to", url, "--max-bandwidth", "1G", "--serial", "/dev/null",
						  "--verify", "--delay", "200", NULL });
	spawn_env = NULL;
	rs = reap(&src, 30000);
	rd = reap(&dst, 20000);
	e = slurp(dst.err);
	cr_assert_eq(rd, 4, "destination exit %d (want 4: digest mismatch): %s", rd, e);
	cr_expect_not_null(strstr(e, "verify: guest RAM digest"), "%s", e);
	free(e);
	e = slurp(src.err);
	cr_expect_eq(rs, 3, "source exit %d (want 3: guest resumed on the source): %s", rs, e);
	free(e);
	cr_assert_eq(stat(dser, &st), 0);
	cr_expect_eq(st.st_size, 0, "the destination's guest printed %lld bytes: it ran", (long long)st.st_size);
}

/* ---- vfio-user devices ------------------------------------------------------------ */

#define MAXDEV 2

struct devs {
	int n;
	struct proc a[MAXDEV], b[MAXDEV]; /* the source's servers, the destination's */
	char asock[MAXDEV][PATH_MAX], bsock[MAXDEV][PATH_MAX];
	char arg_a[MAXDEV][PATH_MAX + 16], arg_b[MAXDEV][PATH_MAX + 16];
	char astate[MAXDEV][PATH_MAX], bstate[MAXDEV][PATH_MAX];
	char arep[MAXDEV][PATH_MAX], brep[MAXDEV][PATH_MAX];
};

/* Start one server (vu-server SOCK ...) and wait for its socket. */
static void server(struct proc *p, const char *name, const char *sock, const char *state, const char *rep,
		   const char *seed, const char *bytes, const char *dma, int unlogged)
{
	struct stat st;
	uint64_t end = ms_now() + 10000;

	const char *args[24] = { sock, "--seed", seed, "--state-bytes", bytes, "--precopy-bytes", "64K",
				 "--dma-every", "5", "--dma-pages", "8", "--state-out", state, "--report", rep };
	int n = 15;

	if (dma) {
		args[n++] = "--dma";
		args[n++] = dma;
	}
	if (unlogged)
		args[n++] = "--dma-unlogged";
	args[n] = NULL;
	spawn_exe(p, name, args, 1);
	while (stat(sock, &st) != 0) {
		int rs;
		cr_assert_eq(waitpid(p->pid, &rs, WNOHANG), 0, "vu-server %s exited before listening", sock);
		cr_assert_lt(ms_now(), end, "vu-server %s never listened", sock);
		usleep(5000);
	}
}

/* n servers on each side; each device DMAs into its own 4 MiB at 48 MiB
 * + 4 MiB * i, which the guest (sweeping 1 MiB .. 33 MiB) never writes. */
static void devs_start(struct devs *d, int n, int unlogged)
{
	static const char *const dma[MAXDEV] = { "0x3000000:4M", "0x3400000:4M" };
	static const char *const bytes[MAXDEV] = { "512K", "700K" };

	memset(d, 0, sizeof(*d));
	d->n = n;
	for (int i = 0; i < n; i++) {
		char name[32], seed[16];
		snprintf(d->asock[i], PATH_MAX, "%s/a%d.sock", dir, i);
		snprintf(d->bsock[i], PATH_MAX, "%s/b%d.sock", dir, i);
		snprintf(d->astate[i], PATH_MAX, "%s/a%d.state", dir, i);
		snprintf(d->bstate[i], PATH_MAX, "%s/b%d.state", dir, i);
		snprintf(d->arep[i], PATH_MAX, "%s/a%d.report", dir, i);
		snprintf(d->brep[i], PATH_MAX, "%s/b%d.report", dir, i);
		snprintf(d->arg_a[i], sizeof(d->arg_a[i]), "vfio-user:%s", d->asock[i]);
		snprintf(d->arg_b[i], sizeof(d->arg_b[i]), "vfio-user:%s", d->bsock[i]);
		snprintf(name, sizeof(name), "vu-a%d", i);
		snprintf(seed, sizeof(seed), "%d", 0x5eed + i);
		server(&d->a[i], name, d->asock[i], d->astate[i], d->arep[i], seed, bytes[i], dma[i], unlogged);
		snprintf(name, sizeof(name), "vu-b%d", i);
		/* the destination's own seed, no DMA range: the range it checks
		 * and goes on writing comes from the source, with the state */
		server(&d->b[i], name, d->bsock[i], d->bstate[i], d->brep[i], "1", "4K", NULL, 0);
	}
}

/* Every server exits once its client left (status 0). */
static void devs_reap(struct devs *d)
{
	for (int i = 0; i < d->n; i++) {
		for (int k = 0; k < 2; k++) {
			struct proc *p = k ? &d->b[i] : &d->a[i];
			int r;
			if (!p->pid)
				continue;
			r = reap(p, 10000);
			if (r)
				dump(p);
			cr_expect_eq(r, 0, "vu-server %s exit %d", k ? d->bsock[i] : d->asock[i], r);
		}
	}
}

/* A "NAME N" line of a server's report; -1 if absent. */
static long report(const char *path, const char *name)
{
	char *s = slurp(path), *p = strstr(s, name);
	long v = p ? atol(p + strlen(name) + 1) : -1;

	free(s);
	return v;
}

static void files_equal(const char *a, const char *b)
{
	FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
	long n = 0;
	int ca, cb;

	cr_assert_not_null(fa, "%s missing", a);
	cr_assert_not_null(fb, "%s missing", b);
	do {
		ca = fgetc(fa);
		cb = fgetc(fb);
		cr_assert_eq(ca, cb, "%s and %s differ at byte %ld", a, b, n);
		n++;
	} while (ca != EOF);
	fclose(fa);
	fclose(fb);
	cr_assert_gt(n, 24 + 256, "%s: %ld bytes, not a device state", a, n - 1);
}

/* The source and destination VMMs, with the devices' arguments; their
 * serial logs go to sser and dser (set here, in the test directory). */
static void vmm_pair(struct proc *src, struct proc *dst, const struct devs *d, char sser[PATH_MAX],
		     char dser[PATH_MAX], const char *bw, int src_devs, int dst_devs)
{
	char url[64];
	const char *sa[40], *da[24];
	int n = 0, m = 0;

	snprintf(sser, PATH_MAX, "%s/src.serial", dir);
	snprintf(dser, PATH_MAX, "%s/dst.serial", dir);
	snprintf(url, sizeof(url), "tcp:127.0.0.1:%d", free_port());
	da[m++] = "--incoming";
	da[m++] = url;
	da[m++] = "--serial";
	da[m++] = dser;
	da[m++] = "--run-for";
	da[m++] = "1500";
	da[m++] = "--timeout";
	da[m++] = "30";
	for (int i = 0; i < dst_devs; i++) {
		da[m++] = "--device";
		da[m++] = d->arg_b[i];
	}
	da[m] = NULL;
	spawn(dst, "dst", da);
	{
		static const char *const fixed[] = { "--guest", "sweep", "--mem", "64M", "--work-size", "32M",
						     "--marker-every", "1", "--downtime-limit", "300", "--auto-converge",
						     "--verify", "--timeout", "40", "--delay", "1000", "--json", NULL };
		for (int i = 0; fixed[i]; i++)
			sa[n++] = fixed[i];
	}
	sa[n++] = "--migrate-to";
	sa[n++] = url;
	sa[n++] = "--max-bandwidth";
	sa[n++] = bw;
	sa[n++] = "--serial";
	sa[n++] = sser;
	for (int i = 0; i < src_devs; i++) {
		sa[n++] = "--device";
		sa[n++] = d->arg_a[i];
	}
	sa[n] = NULL;
	spawn(src, "src", sa);
}

static void migrate_devices(int n)
{
	struct devs d;
	struct proc src, dst;
	char sser[PATH_MAX], dser[PATH_MAX];
	long sfirst, slast, dfirst, dlast;
	int scount, dcount, rs, rd;
	char *e;

	devs_start(&d, n, 0);
	if (n == 1) {
		/* its STOP_COPY bytes (stream 24 + 512 KiB + 256, 64 KiB of it
		 * read in pre-copy) as the engine's hint */
		size_t k = strlen(d.arg_a[0]);
		snprintf(d.arg_a[0] + k, sizeof(d.arg_a[0]) - k, ",stop-copy=%u", 24 + (512u << 10) + 256 - (64u << 10));
	}
	vmm_pair(&src, &dst, &d, sser, dser, "150M", n, n);
	rs = reap(&src, 60000);
	rd = reap(&dst, 30000);
	if (rs || rd) {
		dump(&src);
		dump(&dst);
	}
	cr_assert_eq(rs, 0, "source exit %d", rs);
	cr_assert_eq(rd, 0, "destination exit %d", rd);
	devs_reap(&d);
	if (n == 1) {
		/* the engine's decisions used the hint (plus the stream's
		 * record framing), not a guess from the 64 KiB of pre-copy */
		const long hint = 24 + (512l << 10) + 256 - (64l << 10);
		char *j = slurp(src.out), *p = j;
		int used = 0;
		while ((p = strstr(p, "\"device_stop_copy\":"))) {
			long v = atol(p + 19);
			used |= v >= hint && v < hint + 4096;
			p += 19;
		}
		cr_expect(used, "no decision with device_stop_copy near %ld: %s", hint, j);
		free(j);
	}
	e = slurp(dst.err);
	cr_expect_not_null(strstr(e, "matches the source's"), "no verify line: %s", e);
	free(e);
	{
		/* the JSON has each device, its DMA tracked by its own log */
		char *j = slurp(src.out), *p = j;
		int logged = 0;
		while ((p = strstr(p, "\"dma-tracking\":\"dma-log\""))) {
			logged++;
			p++;
		}
		cr_expect_not_null(strstr(j, "\"vfio-user\":[{\"socket\":"), "JSON without devices: %s", j);
		cr_expect_eq(logged, n, "%d devices with a DMA log in the JSON, want %d: %s", logged, n, j);
		free(j);
	}
	for (int i = 0; i < n; i++) {
		long written = report(d.arep[i], "dma-pages-written"), checked = report(d.brep[i], "dma-pages-checked");
		/* the state each destination server loaded is what its source saved */
		files_equal(d.astate[i], d.bstate[i]);
		cr_expect_eq(report(d.brep[i], "loaded"), 1, "%s did not load a state", d.bsock[i]);
		/* it found every page its source wrote by DMA, with the last
		 * bytes written (4 MiB: 1024 pages) */
		cr_expect_gt(written, 0, "%s wrote nothing by DMA", d.asock[i]);
		cr_expect_eq(checked, written < 1024 ? written : 1024, "%s checked %ld pages, %ld written", d.bsock[i],
			     checked, written);
		cr_expect_eq(report(d.brep[i], "dma-pages-bad"), 0, "%s: DMA pages lost", d.bsock[i]);
		cr_log_info("device %d: %ld DMA pages written on the source, %ld checked on the destination", i,
			    written, checked);
	}
	markers(sser, &sfirst, &slast, &scount);
	markers(dser, &dfirst, &dlast, &dcount);
	cr_assert_gt(dcount, 0, "no marker on the destination");
	cr_expect_gt(dfirst, slast, "the destination's first marker %ld is not past the source's last %ld", dfirst,
		     slast);
}

Test(vmm, one_device) { migrate_devices(1); }
Test(vmm, two_devices) { migrate_devices(2); }

/* The negative control: a device whose DMA escapes its log loses pages,
 * and --verify sees it. */
Test(vmm, device_dma_not_logged)
{
	struct devs d;
	struct proc src, dst;
	char sser[PATH_MAX], dser[PATH_MAX];
	int rs, rd;
	char *e;

	devs_start(&d, 1, 1);
	vmm_pair(&src, &dst, &d, sser, dser, "150M", 1, 1);
	rs = reap(&src, 60000);
	rd = reap(&dst, 30000);
	devs_reap(&d);
	e = slurp(dst.err);
	cr_assert_eq(rd, 4, "destination exit %d (want 4: digest mismatch): %s", rd, e);
	free(e);
	cr_expect_eq(rs, 3, "source exit %d (want 3)", rs);
}

Test(vmm, device_killed)
{
	struct devs d;
	struct proc src, dst;
	char sser[PATH_MAX], dser[PATH_MAX], want[PATH_MAX + 64];
	struct stat st;
	int rs, rd;
	char *e;

	devs_start(&d, 2, 0);
	/* 20 MiB/s: the first pass takes about 3 s, the kill lands in it */
	vmm_pair(&src, &dst, &d, sser, dser, "20M", 2, 2);
	cr_assert(wait_for(src.err, "migrate:", 20000), "the source never started migrating");
	usleep(300000);
	kill(d.a[1].pid, SIGKILL);
	cr_expect_eq(reap(&d.a[1], 5000), -SIGKILL);
	rs = reap(&src, 30000);
	rd = reap(&dst, 20000);
	e = slurp(src.err);
	cr_assert_eq(rs, 3, "source exit %d (want 3: guest resumed on the source): %s", rs, e);
	snprintf(want, sizeof(want), "vfio-user device %s failed", d.asock[1]);
	cr_expect_not_null(strstr(e, want), "the device is not named: %s", e);
	cr_expect_not_null(strstr(e, "guest running on the source after the failed migration"),
			   "the guest printed nothing after the failure: %s", e);
	free(e);
	cr_expect_eq(rd, 1, "destination exit %d", rd);
	cr_assert_eq(stat(dser, &st), 0);
	cr_expect_eq(st.st_size, 0, "the destination's guest printed %lld bytes: it ran", (long long)st.st_size);
	devs_reap(&d);
}

Test(vmm, device_usage)
{
	struct proc p;
	int r;
	char *e;

	spawn(&p, "usage", (const char *const[]){ "--device", "vfio-user:/nonexistent,stop-copy=lots", NULL });
	r = reap(&p, 10000);
	e = slurp(p.err);
	cr_expect_eq(r, 2, "exit %d: %s", r, e);
	cr_expect_not_null(strstr(e, "stop-copy=SIZE"), "%s", e);
	free(e);
	spawn(&p, "nodev", (const char *const[]){ "--device", "vfio-user:/nonexistent/sock", "--run-for", "10", NULL });
	r = reap(&p, 10000);
	e = slurp(p.err);
	cr_expect_eq(r, 1, "exit %d: %s", r, e);
	cr_expect_not_null(strstr(e, "vfio-user device /nonexistent/sock: connecting"), "%s", e);
	free(e);
}

/* The destination's server dies in pre-copy, while nothing is written to
 * it: the destination notices (it checks its servers while it receives),
 * exits 1 naming it and aborts; the source resumes its guest. */
Test(vmm, destination_device_killed)
{
	struct devs d;
	struct proc src, dst;
	char sser[PATH_MAX], dser[PATH_MAX], want[PATH_MAX + 64];
	struct stat st;
	uint64_t t0;
	int rs, rd;
	char *e;

	devs_start(&d, 1, 0);
	vmm_pair(&src, &dst, &d, sser, dser, "20M", 1, 1);
	cr_assert(wait_for(src.err, "migrate:", 20000), "the source never started migrating");
	usleep(300000);
	kill(d.b[0].pid, SIGKILL);
	t0 = ms_now();
	cr_expect_eq(reap(&d.b[0], 5000), -SIGKILL);
	rd = reap(&dst, 20000);
	rs = reap(&src, 30000);
	e = slurp(dst.err);
	cr_assert_eq(rd, 1, "destination exit %d: %s", rd, e);
	snprintf(want, sizeof(want), "vfio-user device %s failed", d.bsock[0]);
	cr_expect_not_null(strstr(e, want), "the device is not named: %s", e);
	cr_expect_not_null(strstr(e, "guest not started"), "%s", e);
	free(e);
	/* not at the source's switchover or its timeout: at once */
	cr_expect_lt(ms_now() - t0, 15000, "the failure took %llu ms to end both sides",
		     (unsigned long long)(ms_now() - t0));
	e = slurp(src.err);
	cr_assert_eq(rs, 3, "source exit %d (want 3: guest resumed on the source): %s", rs, e);
	cr_log_info("source: %s", e);
	free(e);
	cr_assert_eq(stat(dser, &st), 0);
	cr_expect_eq(st.st_size, 0, "the destination's guest printed %lld bytes: it ran", (long long)st.st_size);
	devs_reap(&d);
}

/* The destination must name as many servers as the source has. */
Test(vmm, device_count_mismatch)
{
	struct devs d;
	struct proc src, dst;
	char sser[PATH_MAX], dser[PATH_MAX];
	int rs, rd;
	char *e;

	devs_start(&d, 1, 0);
	vmm_pair(&src, &dst, &d, sser, dser, "150M", 1, 0);
	rs = reap(&src, 30000);
	rd = reap(&dst, 20000);
	e = slurp(dst.err);
	cr_assert_eq(rd, 1, "destination exit %d: %s", rd, e);
	cr_expect_not_null(strstr(e, "1 vfio-user device, --device names 0 here"), "%s", e);
	free(e);
	cr_expect_eq(rs, 3, "source exit %d", rs);
	/* the destination's server never had a client: stop it */
	kill(d.b[0].pid, SIGTERM);
	cr_expect_eq(reap(&d.b[0], 5000), -SIGTERM);
	d.b[0].pid = 0;
	devs_reap(&d);
}
