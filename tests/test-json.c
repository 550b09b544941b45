/* SPDX-License-Identifier: MIT */
/* The tools' one JSON string writer (tools/json.c), used by precopy-probe
 * and precopy-sim: exact output for each class of input, valid UTF-8 JSON
 * for any bytes at all (checked by a validator written here, on every
 * 1- and 2-byte string and on random strings), and the two programs'
 * --json output for a path that is not UTF-8. */
#include <criterion/criterion.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tools/json.h"

/* snprintf that must not truncate */
#define SNP(buf, ...) cr_assert_lt(snprintf(buf, sizeof(buf), __VA_ARGS__), (int)sizeof(buf))

static char *json_of(const char *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	cr_assert_eq(tool_json_str(f, s), 0);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

/* Strict: UTF-8 per RFC 3629 (no overlong form, no surrogate, <= U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], len, cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else
			return 0;
		if (i + len > n)
			return 0;
		for (unsigned k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* One JSON string (RFC 8259 grammar) spanning exactly s[0..n). */
static int valid_json_string(const char *s, size_t n)
{
	size_t i = 1;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"' || !valid_utf8((const unsigned char *)s, n))
		return 0;
	while (i < n - 1) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == '"')
			return 0;
		if (c != '\\') {
			i++;
			continue;
		}
		if (i + 1 >= n - 1)
			return 0;
		c = (unsigned char)s[i + 1];
		if (strchr("\"\\/bfnrt", c)) {
			i += 2;
		} else if (c == 'u') {
			if (i + 6 > n - 1)
				return 0;
			for (int k = 2; k < 6; k++)
				if (!strchr("0123456789abcdefABCDEF", s[i + k]))
					return 0;
			i += 6;
		} else {
			return 0;
		}
	}
	return 1;
}

Test(json, each_class_of_input)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "", "\"\"" },
		{ "plain/path.ini", "\"plain/path.ini\"" },
		{ "q\"b\\", "\"q\\\"b\\\\\"" },
		{ "\x01\t\n\x1f", "\"\\u0001\\u0009\\u000a\\u001f\"" },
		{ "\x7f", "\"\x7f\"" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
		{ "a\xff" "b", "\"a\\ufffdb\"" },                   /* never a lead byte */
		{ "\xc3", "\"\\ufffd\"" },                          /* truncated at the end */
		{ "\xc3(", "\"\\ufffd(\"" },                        /* bad continuation */
		{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },               /* overlong '/' */
		{ "\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"" },    /* overlong, 3 bytes */
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },    /* a surrogate, U+D800 */
		{ "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* above U+10FFFF */
		{ "\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"" },     /* U+10FFFF itself */
		{ "\xef\xbf\xbd", "\"\xef\xbf\xbd\"" },             /* a real U+FFFD is copied */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = json_of(cases[i].in);

		cr_expect_str_eq(out, cases[i].out, "case %zu", i);
		free(out);
	}
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		cr_assert_eq(tool_json_str(f, NULL), 0);
		fclose(f);
		cr_expect_str_eq(buf, "null");
		free(buf);
	}
}

static void check_valid(const char *in)
{
	char *out = json_of(in);

	cr_assert(valid_json_string(out, strlen(out)), "input %s: invalid JSON string out", in);
	free(out);
}

Test(json, any_bytes_give_a_valid_utf8_json_string)
{
	char s[16];
	uint64_t x = 88172645463325252ull;

	for (int a = 1; a < 256; a++) {
		s[0] = (char)a, s[1] = 0;
		check_valid(s);
		for (int b = 1; b < 256; b++) {
			s[1] = (char)b, s[2] = 0;
			check_valid(s);
		}
	}
	for (int i = 0; i < 200000; i++) {
		size_t n = 1 + i % 15;
		for (size_t k = 0; k < n; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			s[k] = (char)(1 + x % 255);
			if (x & 0x100) /* more high bytes: more near-valid sequences */
				s[k] = (char)(0x80 | (x >> 9));
		}
		s[n] = 0;
		check_valid(s);
	}
}

/* ---- the programs ------------------------------------------------------------- */

static char build_dir[PATH_MAX];

static int tool(const char *name, char *path, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	cr_assert_gt(n, 0);
	exe[n] = 0;
	SNP(build_dir, "%s", dirname(dirname(exe)));
	cr_assert_lt(snprintf(path, len, "%s/%s", build_dir, name), (int)len);
	return access(path, X_OK) == 0;
}

static size_t run_capture(const char *cmd, char *out, size_t len, int *status)
{
	FILE *p = popen(cmd, "r");
	size_t got = 0, r;

	cr_assert_not_null(p);
	while (got + 1 < len && (r = fread(out + got, 1, len - 1 - got, p)) > 0)
		got += r;
	out[got] = 0;
	*status = pclose(p);
	return got;
}

/* The JSON member "key": "..." of out, as written. */
static const char *member(const char *out, const char *key, size_t *n)
{
	char pat[64];
	const char *p, *q;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(out, pat);
	cr_assert_not_null(p, "no %s in %.300s", key, out);
	p += strlen(pat);
	while (*p == ' ')
		p++;
	for (q = p + 1; *q && *q != '"'; q++)
		if (*q == '\\')
			q++;
	*n = (size_t)(q + 1 - p);
	return p;
}

Test(json, sim_and_probe_write_a_non_utf8_path_as_valid_json)
{
	static char out[1 << 20];
	char sim[PATH_MAX], probe[PATH_MAX], dir[] = "/tmp/precopy-json-XXXXXX", path[PATH_MAX],
	     cmd[PATH_MAX * 3];
	const char *v;
	size_t n;
	int st;
	FILE *f;

	if (!tool("precopy-sim", sim, sizeof(sim)) || !tool("precopy-probe", probe, sizeof(probe)))
		cr_skip_test("precopy-sim or precopy-probe not built in %s", build_dir);
	cr_assert_not_null(mkdtemp(dir));
	/* a scenario whose name is Latin-1, not UTF-8: "caf\xe9.ini" */
	SNP(path, "%s/caf\xe9.ini", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("[vm]\nmemory = 1G\n[workload]\nrate = 10M/s\n", f);
	cr_assert_eq(fclose(f), 0);
	SNP(cmd, "%s --json '%s'", sim, path);
	n = run_capture(cmd, out, sizeof(out), &st);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status 0x%x", cmd, st);
	cr_expect(valid_utf8((const unsigned char *)out, n), "precopy-sim --json is not UTF-8");
	v = member(out, "scenario", &n);
	cr_expect(valid_json_string(v, n), "%.*s", (int)n, v);
	cr_expect(n > 11 && !memcmp(v + n - 11, "\\ufffd.ini\"", 11), "%.*s", (int)n, v);
	unlink(path);

	/* the probe names its sysfs root: an empty bus under a Latin-1 name */
	SNP(path, "%s/r\xe9", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	SNP(cmd, "%s/r\xe9/devices", dir);
	cr_assert_eq(mkdir(cmd, 0700), 0);
	SNP(cmd, "%s --json --no-open --sysfs '%s'", probe, path);
	n = run_capture(cmd, out, sizeof(out), &st);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status 0x%x: %s", cmd, st, out);
	cr_expect(valid_utf8((const unsigned char *)out, n), "precopy-probe --json is not UTF-8");
	v = member(out, "sysfs_root", &n);
	cr_expect(valid_json_string(v, n), "%.*s", (int)n, v);
	cr_expect(n > 8 && !memcmp(v + n - 8, "r\\ufffd\"", 8), "%.*s", (int)n, v);
	SNP(cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}
