/* SPDX-License-Identifier: MIT */
/* tests/tsan/criterion/criterion.h — the part of Criterion 2.4's API the
 * suites use (Test, TestSuite with .init/.fini/.timeout, cr_assert_* and
 * cr_expect_*, cr_skip_test, cr_log_*), for the ThreadSanitizer build. The
 * suites compile unchanged against it (tests/tsan comes first on the
 * include path) and link tests/tsan/runner.c, which runs each test in its
 * own forked process as Criterion does. Why Criterion's own runner cannot
 * be used under TSan: docs/sanitizers.md.
 *
 * Differences a test can see: a failed assertion prints the expression and
 * the test's message, not the operands' values; the first failed
 * cr_assert ends the test process at once (the suite's fini does not run,
 * as nothing outlives the process).
 *
 * Thread safety: assertions may fail in any thread of the test; the
 * failure ends the test process. */
#ifndef TSAN_CRITERION_H
#define TSAN_CRITERION_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tsr_opts {
	int tsr_unused; /* keeps { .tsr_unused = 0, __VA_ARGS__ } valid with no options */
	void (*init)(void);
	void (*fini)(void);
	double timeout;  /* seconds; 0: none */
	int disabled;
	const char *description;
};

void tsr_register_test(const char *suite, const char *name, void (*fn)(void), const struct tsr_opts *o);
void tsr_register_suite(const char *suite, const struct tsr_opts *o);
/* fatal: end the test now (cr_assert); else record it (cr_expect). fmt
 * starts with one space (see TSR_MSG). */
void tsr_fail(int fatal, const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
__attribute__((noreturn, format(printf, 1, 2))) void tsr_skip(const char *fmt, ...);
void tsr_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define Test(suite, name, ...)                                                                   \
	static void tsr_body_##suite##_##name(void);                                              \
	__attribute__((constructor)) static void tsr_reg_##suite##_##name(void)                    \
	{                                                                                         \
		static const struct tsr_opts o = { .tsr_unused = 0, __VA_ARGS__ };               \
		tsr_register_test(#suite, #name, tsr_body_##suite##_##name, &o);                 \
	}                                                                                         \
	static void tsr_body_##suite##_##name(void)

/* ends in a declaration, so that the suites' "TestSuite(...);" parses */
#define TestSuite(suite, ...)                                                                    \
	__attribute__((constructor)) static void tsr_suite_##suite(void)                           \
	{                                                                                         \
		static const struct tsr_opts o = { .tsr_unused = 0, __VA_ARGS__ };               \
		tsr_register_suite(#suite, &o);                                                   \
	}                                                                                         \
	extern int tsr_suite_decl_##suite

/* The optional message: a format literal and its arguments, or nothing.
 * The leading " " keeps the format non-empty (-Wformat-zero-length). */
#define TSR_MSG(...) " " __VA_ARGS__

#define TSR_CHECK(fatal, cond, expr, ...)                                                        \
	do {                                                                                      \
		if (!(cond))                                                                      \
			tsr_fail(fatal, __FILE__, __LINE__, expr, TSR_MSG(__VA_ARGS__));          \
	} while (0)

#define TSR_STR(fatal, a, b, eq, expr, ...)                                                      \
	do {                                                                                      \
		const char *tsr_a = (a), *tsr_b = (b);                                            \
		if ((strcmp(tsr_a, tsr_b) == 0) != (eq)) {                                        \
			fprintf(stderr, "  actual \"%s\", expected%s \"%s\"\n", tsr_a, (eq) ? "" : " not", \
				tsr_b);                                                            \
			tsr_fail(fatal, __FILE__, __LINE__, expr, TSR_MSG(__VA_ARGS__));          \
		}                                                                                 \
	} while (0)

#define cr_assert(c, ...) TSR_CHECK(1, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) TSR_CHECK(1, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) TSR_CHECK(1, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) TSR_CHECK(1, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) TSR_CHECK(1, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) TSR_CHECK(1, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) TSR_CHECK(1, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) TSR_CHECK(1, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) TSR_CHECK(1, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) TSR_CHECK(1, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) TSR_STR(1, a, b, 1, #a " == " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) TSR_STR(1, a, b, 0, #a " != " #b, __VA_ARGS__)
#define cr_assert_str_empty(s, ...) TSR_CHECK(1, (s)[0] == 0, #s " is empty", __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...) TSR_CHECK(1, !memcmp((a), (b), (n)), #a " == " #b, __VA_ARGS__)
#define cr_assert_fail(...) tsr_fail(1, __FILE__, __LINE__, "cr_assert_fail", TSR_MSG(__VA_ARGS__))

#define cr_expect(c, ...) TSR_CHECK(0, (c), #c, __VA_ARGS__)
#define cr_expect_not(c, ...) TSR_CHECK(0, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect_eq(a, b, ...) TSR_CHECK(0, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) TSR_CHECK(0, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) TSR_CHECK(0, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) TSR_CHECK(0, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) TSR_CHECK(0, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) TSR_CHECK(0, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_null(p, ...) TSR_CHECK(0, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) TSR_CHECK(0, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) TSR_STR(0, a, b, 1, #a " == " #b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) TSR_STR(0, a, b, 0, #a " != " #b, __VA_ARGS__)
#define cr_expect_str_empty(s, ...) TSR_CHECK(0, (s)[0] == 0, #s " is empty", __VA_ARGS__)
#define cr_expect_arr_eq(a, b, n, ...) TSR_CHECK(0, !memcmp((a), (b), (n)), #a " == " #b, __VA_ARGS__)

#define cr_skip_test(...) tsr_skip(TSR_MSG(__VA_ARGS__))
#define cr_log_info(...) tsr_log("INFO", __VA_ARGS__)
#define cr_log_warn(...) tsr_log("WARN", __VA_ARGS__)

#endif /* TSAN_CRITERION_H */
