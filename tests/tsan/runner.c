/* SPDX-License-Identifier: MIT */
/* tests/tsan/runner.c — the test runner of the ThreadSanitizer build: the
 * Criterion subset of tests/tsan/criterion/criterion.h, each test in its
 * own forked process (as Criterion runs them), one at a time, with a
 * timeout. Prints Criterion's per-test lines and its closing "Synthesis"
 * line, so tests/run.sh reads its output as it reads Criterion's.
 *
 *   test-NAME [--filter 'suite/name*'] [--list] [--verbose] [--jobs N]
 *
 * --jobs is accepted and ignored (tests run one at a time: TSan's own
 * threads are enough for two cores). A test process ends with 0 (passed),
 * 1 (an assertion failed), 77 (skipped), TSan's exit code 66 (a data race
 * or another TSan report), or a signal. TSAN_TIMEOUT_SCALE (default 10)
 * multiplies each test's .timeout; a test without one gets
 * TSAN_TEST_TIMEOUT seconds (default 600). */
#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"

#define MAX_TESTS 1024
#define MAX_SUITES 64
#define EXIT_SKIP 77
#define EXIT_TSAN 66

struct test {
	const char *suite, *name;
	void (*fn)(void);
	const struct tsr_opts *o;
};

static struct test tests[MAX_TESTS];
static int ntests;
static struct {
	const char *name;
	const struct tsr_opts *o;
} suites[MAX_SUITES];
static int nsuites;
static int overflow;
static const struct test *cur; /* in the test process: the test it runs */
static atomic_int failed; /* in the test process: a cr_expect failed */

void tsr_register_test(const char *suite, const char *name, void (*fn)(void), const struct tsr_opts *o)
{
	if (ntests == MAX_TESTS) {
		overflow = 1;
		return;
	}
	tests[ntests++] = (struct test){ suite, name, fn, o };
}

void tsr_register_suite(const char *suite, const struct tsr_opts *o)
{
	if (nsuites == MAX_SUITES) {
		overflow = 1;
		return;
	}
	suites[nsuites].name = suite;
	suites[nsuites++].o = o;
}

void tsr_fail(int fatal, const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n", file, line, expr);
	if (fmt[0] && fmt[1]) {
		fputs("[----]   ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt + 1, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	atomic_store(&failed, 1);
	if (fatal)
		exit(1); /* exit, not _exit: TSan reports what it saw at exit */
}

void tsr_skip(const char *fmt, ...)
{
	va_list ap;

	printf("[SKIP] %s::%s: ", cur->suite, cur->name);
	va_start(ap, fmt);
	vfprintf(stdout, fmt[0] ? fmt + 1 : fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	exit(EXIT_SKIP);
}

void tsr_log(const char *level, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%s] ", level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const struct tsr_opts *suite_opts(const char *name)
{
	for (int i = 0; i < nsuites; i++)
		if (!strcmp(suites[i].name, name))
			return suites[i].o;
	return NULL;
}

static int cmp_test(const void *a, const void *b)
{
	const struct test *x = a, *y = b;
	int c = strcmp(x->suite, y->suite);

	return c ? c : strcmp(x->name, y->name);
}

static double env_num(const char *name, double dflt)
{
	const char *s = getenv(name);
	char *end;
	double v;

	if (!s || !*s)
		return dflt;
	v = strtod(s, &end);
	return *end || v <= 0 ? dflt : v;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void child(const struct test *t)
{
	const struct tsr_opts *so = suite_opts(t->suite);

	cur = t;
	if (so && so->init)
		so->init();
	if (t->o->init)
		t->o->init();
	t->fn();
	if (t->o->fini)
		t->o->fini();
	if (so && so->fini)
		so->fini();
	exit(atomic_load(&failed) ? 1 : 0);
}

/* Run one test; returns 0 passed, 1 skipped, 2 failed, 3 crashed. */
static int run(const struct test *t, int verbose, double scale, double dflt_timeout)
{
	double limit = t->o->timeout > 0 ? t->o->timeout * scale : dflt_timeout, t0 = now_s();
	int status, timed_out = 0;
	pid_t pid, w;

	if (verbose)
		printf("[RUN ] %s::%s\n", t->suite, t->name);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		printf("[FAIL] %s::%s: fork: %s\n", t->suite, t->name, strerror(errno));
		return 3;
	}
	if (pid == 0)
		child(t);
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			printf("[FAIL] %s::%s: waitpid: %s\n", t->suite, t->name, strerror(errno));
			return 3;
		}
		if (!timed_out && now_s() - t0 > limit) {
			kill(pid, SIGKILL);
			timed_out = 1;
		}
		usleep(2000);
	}
	if (timed_out) {
		printf("[FAIL] %s::%s: timed out after %.0f s\n", t->suite, t->name, limit);
		return 3;
	}
	if (WIFSIGNALED(status)) {
		printf("[FAIL] %s::%s: CRASH! signal %d (%s)\n", t->suite, t->name, WTERMSIG(status),
		       strsignal(WTERMSIG(status)));
		return 3;
	}
	switch (WEXITSTATUS(status)) {
	case 0:
		if (verbose)
			printf("[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, now_s() - t0);
		return 0;
	case EXIT_SKIP:
		return 1;
	case EXIT_TSAN:
		printf("[FAIL] %s::%s: ThreadSanitizer reported an error (exit %d, report above)\n", t->suite, t->name,
		       EXIT_TSAN);
		return 2;
	default:
		printf("[FAIL] %s::%s: (%.2fs) exit %d\n", t->suite, t->name, now_s() - t0, WEXITSTATUS(status));
		return 2;
	}
}

int main(int argc, char **argv)
{
	const char *filter = NULL;
	int verbose = 0, list = 0, n = 0, pass = 0, skip = 0, fail = 0, crash = 0;
	double scale = env_num("TSAN_TIMEOUT_SCALE", 10), dflt = env_num("TSAN_TEST_TIMEOUT", 600);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--filter") && i + 1 < argc)
			filter = argv[++i];
		else if (!strncmp(argv[i], "--filter=", 9))
			filter = argv[i] + 9;
		else if (!strcmp(argv[i], "--list") || !strcmp(argv[i], "-l"))
			list = 1;
		else if (!strncmp(argv[i], "--verbose", 9))
			verbose = 1;
		else if ((!strcmp(argv[i], "--jobs") || !strcmp(argv[i], "-j")) && i + 1 < argc)
			i++;
		else if (strncmp(argv[i], "--jobs=", 7) && strncmp(argv[i], "-j", 2)) {
			fprintf(stderr, "usage: %s [--filter PATTERN] [--list] [--verbose] [--jobs N]\n", argv[0]);
			return 2;
		}
	}
	if (overflow) {
		fprintf(stderr, "%s: more than %d tests or %d suites\n", argv[0], MAX_TESTS, MAX_SUITES);
		return 2;
	}
	qsort(tests, (size_t)ntests, sizeof(tests[0]), cmp_test);
	printf("[----] ThreadSanitizer runner (tests/tsan/runner.c)\n");
	for (int i = 0; i < ntests; i++) {
		const struct test *t = &tests[i];
		char full[256];

		snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
		if (filter && fnmatch(filter, full, 0))
			continue;
		if (list) {
			printf("%s\n", full);
			continue;
		}
		n++;
		if (t->o->disabled) {
			printf("[SKIP] %s::%s: disabled\n", t->suite, t->name);
			pass++, skip++;
			continue;
		}
		switch (run(t, verbose, scale, dflt)) {
		case 0: pass++; break;
		case 1: pass++, skip++; break; /* Criterion counts a skip as passing */
		case 2: fail++; break;
		default: crash++; break;
		}
	}
	if (list)
		return 0;
	printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n", n, pass, fail, crash);
	return fail || crash;
}
