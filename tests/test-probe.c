/* SPDX-License-Identifier: MIT */
/* precopy-probe, run as a program: its --json output is parsed by a strict
 * JSON parser (below, tested on its own first) and compared with
 * /sys/bus/pci read directly; the table names every device; a prepared sysfs
 * tree stands in for a VFIO host (and carries names that need escaping);
 * exit codes for a missing bus and usage errors.
 *
 * The tool is found next to this binary's directory (build/tests/test-probe
 * -> build/precopy-probe), or at $PRECOPY_PROBE. `make test` does not build
 * tools: where it is missing the tests skip and say so. */
#include "test-pci-fixture.h"
#include "lib/vu_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "precopy/pci.h"
#include "precopy/sys.h"

/* ---- a strict JSON parser (RFC 8259), enough to check the tool ------------ */

enum jt { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	enum jt t;
	bool b;
	double n;
	char *s;           /* J_STR: decoded UTF-8 */
	struct jv **items; /* J_ARR, J_OBJ values */
	char **keys;       /* J_OBJ */
	size_t len;
};

struct jp {
	const char *p;
	const char *err;
};

static void jfree(struct jv *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->len; i++) {
		jfree(v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->s);
	free(v);
}

static void ws(struct jp *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static struct jv *jnew(enum jt t)
{
	struct jv *v = calloc(1, sizeof(*v));
	cr_assert(v);
	v->t = t;
	return v;
}

static int hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Valid UTF-8 sequence length at p, 0 if invalid. */
static size_t utf8_ok(const unsigned char *p)
{
	size_t n;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0)
		n = 2, cp = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		n = 3, cp = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static char *jstring(struct jp *j)
{
	size_t cap = strlen(j->p) + 1, n = 0;
	char *o = malloc(cap);

	cr_assert(o);
	j->p++; /* opening quote */
	for (;;) {
		unsigned char c = (unsigned char)*j->p;
		if (c == '"') {
			j->p++;
			o[n] = '\0';
			return o;
		}
		if (c < 0x20) {
			j->err = c ? "raw control character in string" : "unterminated string";
			break;
		}
		if (c != '\\') {
			size_t l = utf8_ok((const unsigned char *)j->p);
			if (!l) {
				j->err = "invalid UTF-8";
				break;
			}
			memcpy(o + n, j->p, l);
			n += l;
			j->p += l;
			continue;
		}
		j->p++;
		switch (*j->p++) {
		case '"': o[n++] = '"'; break;
		case '\\': o[n++] = '\\'; break;
		case '/': o[n++] = '/'; break;
		case 'b': o[n++] = '\b'; break;
		case 'f': o[n++] = '\f'; break;
		case 'n': o[n++] = '\n'; break;
		case 'r': o[n++] = '\r'; break;
		case 't': o[n++] = '\t'; break;
		case 'u': {
			int u = hex4(j->p);
			uint32_t cp;
			if (u < 0) {
				j->err = "bad \\u escape";
				goto fail;
			}
			j->p += 4;
			cp = (uint32_t)u;
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				j->err = "lone low surrogate";
				goto fail;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				int lo = j->p[0] == '\\' && j->p[1] == 'u' ? hex4(j->p + 2) : -1;
				if (lo < 0xdc00 || lo > 0xdfff) {
					j->err = "lone high surrogate";
					goto fail;
				}
				j->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
			}
			n += put_utf8(o + n, cp);
			break;
		}
		default:
			j->err = "bad escape";
			goto fail;
		}
	}
fail:
	free(o);
	return NULL;
}

static struct jv *jvalue(struct jp *j, int depth);

static struct jv *jcontainer(struct jp *j, int depth, bool obj)
{
	struct jv *v = jnew(obj ? J_OBJ : J_ARR);
	char close = obj ? '}' : ']';

	j->p++;
	ws(j);
	if (*j->p == close) {
		j->p++;
		return v;
	}
	for (;;) {
		char *key = NULL;
		struct jv *item;

		ws(j);
		if (obj) {
			if (*j->p != '"') {
				j->err = "expected a key";
				goto fail;
			}
			key = jstring(j);
			if (!key)
				goto fail;
			ws(j);
			if (*j->p != ':') {
				free(key);
				j->err = "expected ':'";
				goto fail;
			}
			j->p++;
		}
		item = jvalue(j, depth + 1);
		if (!item) {
			free(key);
			goto fail;
		}
		v->items = realloc(v->items, sizeof(*v->items) * (v->len + 1));
		cr_assert(v->items);
		if (obj) {
			v->keys = realloc(v->keys, sizeof(*v->keys) * (v->len + 1));
			cr_assert(v->keys);
			v->keys[v->len] = key;
		}
		v->items[v->len++] = item;
		ws(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p == close) {
			j->p++;
			return v;
		}
		j->err = "expected ',' or a closing bracket";
		goto fail;
	}
fail:
	jfree(v);
	return NULL;
}

static struct jv *jvalue(struct jp *j, int depth)
{
	struct jv *v;

	ws(j);
	if (depth > 64) {
		j->err = "too deep";
		return NULL;
	}
	switch (*j->p) {
	case '{':
		return jcontainer(j, depth, true);
	case '[':
		return jcontainer(j, depth, false);
	case '"': {
		char *s = jstring(j);
		if (!s)
			return NULL;
		v = jnew(J_STR);
		v->s = s;
		return v;
	}
	}
	if (!strncmp(j->p, "true", 4) || !strncmp(j->p, "false", 5)) {
		v = jnew(J_BOOL);
		v->b = *j->p == 't';
		j->p += v->b ? 4 : 5;
		return v;
	}
	if (!strncmp(j->p, "null", 4)) {
		j->p += 4;
		return jnew(J_NULL);
	}
	/* number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
	const char *s = j->p;
	if (*j->p == '-')
		j->p++;
	if (*j->p == '0')
		j->p++;
	else if (*j->p >= '1' && *j->p <= '9')
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	else {
		j->err = "unexpected character";
		return NULL;
	}
	if (*j->p == '.') {
		j->p++;
		if (!(*j->p >= '0' && *j->p <= '9')) {
			j->err = "bad fraction";
			return NULL;
		}
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (*j->p == 'e' || *j->p == 'E') {
		j->p++;
		if (*j->p == '+' || *j->p == '-')
			j->p++;
		if (!(*j->p >= '0' && *j->p <= '9')) {
			j->err = "bad exponent";
			return NULL;
		}
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	v = jnew(J_NUM);
	v->n = strtod(s, NULL);
	return v;
}

/* The whole text must be one value. NULL (and *err) on any error. */
static struct jv *jparse(const char *text, const char **err)
{
	struct jp j = { text, NULL };
	struct jv *v = jvalue(&j, 0);

	if (v) {
		ws(&j);
		if (*j.p) {
			j.err = "trailing characters";
			jfree(v);
			v = NULL;
		}
	}
	if (err)
		*err = j.err;
	return v;
}

static const struct jv *jget(const struct jv *o, const char *key)
{
	if (!o || o->t != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->len; i++)
		if (!strcmp(o->keys[i], key))
			return o->items[i];
	return NULL;
}

Test(json_parser, accepts_valid_and_rejects_invalid)
{
	static const char *const good[] = {
		"{}", "[]", "0", "-1.5e+3", "\"a\\u00e9\\ud83d\\ude00\"", "{\"a\": [1, true, null, \"x\"]}",
		" {\"a\":{\"b\":[]}} ",
	};
	static const char *const bad[] = {
		"",	      "{",	     "{\"a\":}",   "[1,]",	"{\"a\" 1}", "01",     "1.",
		"\"\x01\"",   "\"\\x\"",     "\"\\ud800\"", "\"\\udc00\"", "{} {}",   "nul",    "\"\xff\"",
		"{a: 1}",     "[1 2]",	     "\"abc",	    "-",	 "1e",	     "'a'",    "[\"\xc0\x80\"]",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *err;
		struct jv *v = jparse(good[i], &err);
		cr_expect_not_null(v, "rejected %s: %s", good[i], err);
		jfree(v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct jv *v = jparse(bad[i], NULL);
		cr_expect_null(v, "accepted invalid JSON #%zu", i);
		jfree(v);
	}
	struct jv *v = jparse("\"a\\u00e9\\ud83d\\ude00\\\"\\\\\"", NULL);
	cr_assert_not_null(v);
	cr_expect_str_eq(v->s, "a\xc3\xa9\xf0\x9f\x98\x80\"\\");
	jfree(v);
}

/* ---- running the tool -------------------------------------------------------- */

static bool tool_path(char *buf, size_t len)
{
	const char *env = getenv("PRECOPY_PROBE");
	char exe[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		FX_SNPRINTF(buf, len, "%s", env);
	} else {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		cr_assert_gt(n, 0, "readlink /proc/self/exe: %s", strerror(errno));
		exe[n] = '\0';
		/* <build>/tests/test-probe -> <build>/precopy-probe */
		char *tests_dir = dirname(exe);
		char *build_dir = dirname(tests_dir);
		FX_SNPRINTF(buf, len, "%s/precopy-probe", build_dir);
	}
	return access(buf, X_OK) == 0;
}

struct run {
	int status; /* exit code */
	char *out, *err;
};

static char *slurp_fd(int fd)
{
	off_t size = lseek(fd, 0, SEEK_END);
	char *buf;

	cr_assert_geq(size, 0);
	buf = malloc((size_t)size + 1);
	cr_assert(buf);
	cr_assert_eq(pread(fd, buf, (size_t)size, 0), size);
	buf[size] = '\0';
	return buf;
}

/* Runs the tool with args (NULL-terminated, without argv[0]). */
static struct run run_tool(const char *const *args)
{
	char path[PATH_MAX];
	const char *argv[16];
	struct run r;
	int out, err, st, n = 0;
	pid_t pid;

	if (!tool_path(path, sizeof(path)))
		cr_skip_test("%s not built: `make test` builds suites only; run `make` (or set "
			     "PRECOPY_PROBE) to test the tool",
			     path);
	argv[n++] = path;
	while (*args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;

	out = memfd_create("probe-out", MFD_CLOEXEC);
	err = memfd_create("probe-err", MFD_CLOEXEC);
	cr_assert(out >= 0 && err >= 0, "memfd_create: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(out, 1);
		dup2(err, 2);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	r.out = slurp_fd(out);
	r.err = slurp_fd(err);
	close(out);
	close(err);
	cr_assert(WIFEXITED(st), "precopy-probe died (status 0x%x); stderr:\n%s", st, r.err);
	r.status = WEXITSTATUS(st);
	return r;
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static struct jv *parse_or_fail(const struct run *r)
{
	const char *err = NULL;
	struct jv *v = jparse(r->out, &err);

	cr_assert_not_null(v, "invalid JSON (%s):\n%s", err, r->out);
	cr_assert_eq(v->t, J_OBJ);
	return v;
}

/* A device object is complete and well typed. */
static void check_device_shape(const struct jv *d)
{
	static const char *const strs[] = { "address", "vendor_id", "device_id", "class_id", "prog_if",
					    "revision" };
	static const char *const maybe_strs[] = { "vendor", "device", "class", "driver", "vfio_cdev" };
	const struct jv *g = jget(d, "iommu_group"), *v = jget(d, "vfio");

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const struct jv *s = jget(d, strs[i]);
		cr_expect(s && s->t == J_STR, "device field %s missing or not a string", strs[i]);
	}
	for (size_t i = 0; i < sizeof(maybe_strs) / sizeof(maybe_strs[0]); i++) {
		const struct jv *s = jget(d, maybe_strs[i]);
		cr_expect(s && (s->t == J_STR || s->t == J_NULL), "device field %s", maybe_strs[i]);
	}
	cr_expect(g && (g->t == J_NUM || g->t == J_NULL), "iommu_group");
	cr_expect(v && v->t == J_BOOL, "vfio");
}

/* A migration object is either {path,node,error} / {error} or the full report. */
static void check_migration_shape(const struct jv *m)
{
	cr_assert(m && m->t == J_OBJ, "vfio device without a migration object");
	const struct jv *e = jget(m, "error");
	if (e) {
		cr_expect_eq(e->t, J_STR);
		cr_expect_gt(strlen(e->s), 0);
		return;
	}
	const struct jv *f = jget(m, "flags"), *mg = jget(m, "migratable"), *dl = jget(m, "dma_logging");
	cr_assert(f && f->t == J_ARR);
	for (size_t i = 0; i < f->len; i++)
		cr_expect(f->items[i]->t == J_STR && (!strcmp(f->items[i]->s, "stop_copy") ||
						     !strcmp(f->items[i]->s, "p2p") ||
						     !strcmp(f->items[i]->s, "pre_copy")));
	cr_expect(mg && mg->t == J_BOOL);
	cr_expect(dl && dl->t == J_BOOL);
}

/* ---- this machine ---------------------------------------------------------- */

Test(probe, json_lists_what_sysfs_lists)
{
	const char *args[] = { "--json", NULL };
	struct run r = run_tool(args);
	char (*addrs)[32];
	int ns = sysfs_addrs(&addrs), nvfio = 0;

	cr_assert_eq(r.status, 0, "exit %d; stderr:\n%s", r.status, r.err);
	struct jv *v = parse_or_fail(&r);
	const struct jv *devs = jget(v, "devices"), *nv = jget(v, "vfio_devices");

	cr_assert(devs && devs->t == J_ARR, "no devices array");
	cr_assert_eq(devs->len, (size_t)ns, "tool lists %zu devices, sysfs %d", devs->len, ns);
	for (int i = 0; i < ns; i++) {
		const struct jv *d = devs->items[i];
		const struct jv *drv = jget(d, "driver"), *grp = jget(d, "iommu_group");
		char sdrv[256], sgrp[64];

		check_device_shape(d);
		cr_expect_str_eq(jget(d, "address")->s, addrs[i]);
		sysfs_link(addrs[i], "driver", sdrv, sizeof(sdrv));
		if (sdrv[0])
			cr_expect(drv->t == J_STR && !strcmp(drv->s, sdrv), "%s: driver", addrs[i]);
		else
			cr_expect_eq(drv->t, J_NULL, "%s: driver", addrs[i]);
		sysfs_link(addrs[i], "iommu_group", sgrp, sizeof(sgrp));
		if (sgrp[0])
			cr_expect(grp->t == J_NUM && grp->n == atoi(sgrp), "%s: group", addrs[i]);
		else
			cr_expect_eq(grp->t, J_NULL, "%s: group", addrs[i]);
		char vid[8];
		snprintf(vid, sizeof(vid), "%04lx", sysfs_hex(addrs[i], "vendor"));
		cr_expect_str_eq(jget(d, "vendor_id")->s, vid, "%s: vendor", addrs[i]);
		if (jget(d, "vfio")->b) {
			nvfio++;
			check_migration_shape(jget(d, "migration"));
		} else {
			cr_expect_null(jget(d, "migration"), "%s: migration for a non-VFIO device", addrs[i]);
		}
	}
	cr_assert(nv && nv->t == J_NUM);
	cr_expect_eq((int)nv->n, nvfio);
	jfree(v);
	free(addrs);
	run_free(&r);
}

Test(probe, table_names_every_device)
{
	const char *args[] = { NULL };
	struct run r = run_tool(args);
	struct precopy_pci_device *devs;
	char (*addrs)[32];
	int ns = sysfs_addrs(&addrs), n, nvfio = 0;

	cr_assert_eq(r.status, 0, "exit %d; stderr:\n%s", r.status, r.err);
	cr_expect_str_empty(r.err);
	for (int i = 0; i < ns; i++)
		cr_expect(strstr(r.out, addrs[i]), "%s missing from:\n%s", addrs[i], r.out);
	n = precopy_pci_scan(NULL, &devs, NULL, 0);
	cr_assert_geq(n, 1);
	for (int i = 0; i < n; i++)
		nvfio += devs[i].is_vfio;
	if (nvfio == 0)
		cr_expect(strstr(r.out, "no device is bound to vfio-pci"), "output:\n%s", r.out);
	else
		cr_expect_null(strstr(r.out, "no device is bound to vfio-pci"));
	precopy_pci_devices_free(devs);
	free(addrs);
	run_free(&r);
}

/* ---- a prepared VFIO host ---------------------------------------------------- */

/* A driver name that needs every kind of escaping: quote, backslash, a
 * control character, an invalid UTF-8 byte, and a valid two-byte one. */
#define ODD_DRIVER "we\"ird\\drv\x01\xff\xc3\xa9"
#define ODD_DRIVER_DECODED "we\"ird\\drv\x01\xef\xbf\xbd\xc3\xa9"

static const struct fake_dev fake_host[] = {
	{ "0000:81:00.0", 0x15b3, 0x101e, 0x020000, "vfio-pci", FAKE_GROUP, FAKE_CDEV },
	{ "0000:81:00.1", 0x15b3, 0x101e, 0x020000, "mlx5_core", FAKE_GROUP, NULL },
	{ "0000:00:05.0", 0x1af4, 0x1044, 0xffff00, ODD_DRIVER, -1, NULL },
};

Test(probe, prepared_vfio_host_json)
{
	char *root = fx_tree(fake_host, 3);
	const char *args[] = { "--json", "--sysfs", root, NULL };
	struct run r = run_tool(args);

	cr_assert_eq(r.status, 0, "exit %d; stderr:\n%s", r.status, r.err);
	struct jv *v = parse_or_fail(&r);
	const struct jv *devs = jget(v, "devices");

	cr_assert(devs && devs->t == J_ARR && devs->len == 3);
	cr_expect_str_eq(jget(v, "sysfs_root")->s, root);
	cr_expect_eq(jget(v, "vfio_devices")->n, 1);

	const struct jv *odd = devs->items[0], *vf = devs->items[1], *host = devs->items[2];
	for (int i = 0; i < 3; i++)
		check_device_shape(devs->items[i]);
	cr_expect_str_eq(jget(odd, "address")->s, "0000:00:05.0");
	cr_expect_str_eq(jget(odd, "driver")->s, ODD_DRIVER_DECODED);
	cr_expect_str_eq(jget(odd, "class_id")->s, "ffff");

	cr_expect_str_eq(jget(vf, "address")->s, "0000:81:00.0");
	cr_expect_str_eq(jget(vf, "driver")->s, "vfio-pci");
	cr_expect_eq(jget(vf, "iommu_group")->n, FAKE_GROUP);
	cr_expect_str_eq(jget(vf, "vfio_cdev")->s, FAKE_CDEV);
	cr_expect(jget(vf, "vfio")->b);
	const struct jv *m = jget(vf, "migration");
	check_migration_shape(m);
	/* neither /dev/vfio/devices/vfio2147483000 nor /dev/vfio/2147483000
	 * exists anywhere: the report says so */
	cr_assert_not_null(jget(m, "error"));
	cr_expect(strstr(jget(m, "error")->s, "ENOENT") && strstr(jget(m, "error")->s, "/dev/vfio/2147483000"),
		  "error: %s", jget(m, "error")->s);

	cr_expect_not(jget(host, "vfio")->b);
	cr_expect_null(jget(host, "migration"));
	jfree(v);
	run_free(&r);
	fx_tree_rm(root);
}

Test(probe, prepared_vfio_host_table_and_no_open)
{
	char *root = fx_tree(fake_host, 2);
	const char *table[] = { "--sysfs", root, NULL };
	const char *noopen[] = { "--json", "--no-open", "--sysfs", root, NULL };
	struct run r = run_tool(table);

	cr_assert_eq(r.status, 0, "exit %d; stderr:\n%s", r.status, r.err);
	cr_expect(strstr(r.out, "1 bound to vfio-pci"), "%s", r.out);
	cr_expect(strstr(r.out, "cannot open /dev/vfio/2147483000"), "%s", r.out);
	cr_expect_null(strstr(r.out, "no device is bound to vfio-pci"));
	run_free(&r);

	r = run_tool(noopen);
	cr_assert_eq(r.status, 0);
	struct jv *v = parse_or_fail(&r);
	const struct jv *vf = jget(v, "devices")->items[0];
	cr_expect(jget(vf, "vfio")->b);
	cr_expect_null(jget(vf, "migration"), "--no-open still probed");
	jfree(v);
	run_free(&r);
	fx_tree_rm(root);
}

Test(probe, empty_bus_says_no_vfio_device)
{
	char *root = fx_tree(NULL, 0);
	const char *table[] = { "--sysfs", root, NULL };
	const char *json[] = { "--json", "--sysfs", root, NULL };
	struct run r = run_tool(table);

	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "0 PCI devices; no device is bound to vfio-pci"), "%s", r.out);
	run_free(&r);
	r = run_tool(json);
	cr_expect_eq(r.status, 0);
	struct jv *v = parse_or_fail(&r);
	cr_expect_eq(jget(v, "devices")->len, 0);
	cr_expect_eq(jget(v, "vfio_devices")->n, 0);
	jfree(v);
	run_free(&r);
	fx_tree_rm(root);
}

/* ---- exit codes ----------------------------------------------------------------- */

Test(probe, unreadable_bus_exits_1_with_message)
{
	const char *args[] = { "--json", "--sysfs", "/nonexistent/precopy", NULL };
	struct run r = run_tool(args);

	cr_expect_eq(r.status, 1);
	cr_expect_str_empty(r.out);
	cr_expect(strstr(r.err, "cannot list PCI devices") && strstr(r.err, "ENOENT"), "%s", r.err);
	run_free(&r);
}

Test(probe, help_and_usage_errors)
{
	const char *help[] = { "--help", NULL };
	const char *bogus[] = { "--bogus", NULL };
	const char *extra[] = { "extra", NULL };
	const char *noarg[] = { "--sysfs", NULL };
	struct run r = run_tool(help);

	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "usage:") && strstr(r.out, "--json"));
	run_free(&r);
	r = run_tool(bogus);
	cr_expect_eq(r.status, 2);
	cr_expect(strstr(r.err, "usage:"));
	run_free(&r);
	r = run_tool(extra);
	cr_expect_eq(r.status, 2);
	cr_expect(strstr(r.err, "unexpected argument"));
	run_free(&r);
	r = run_tool(noarg);
	cr_expect_eq(r.status, 2);
	run_free(&r);
}

/* ---- --vfio-user ------------------------------------------------------------ */

static void vu_path(char *buf, size_t len)
{
	FX_SNPRINTF(buf, len, "/tmp/precopy-probe-vu-%d.sock", (int)getpid());
}

static const struct jv *vu_obj(const struct jv *v)
{
	const struct jv *o = jget(v, "vfio_user");
	cr_assert(o && o->t == J_OBJ, "no vfio_user object");
	return o;
}

Test(probe, vfio_user_server_json)
{
	char path[108];
	vu_path(path, sizeof(path));
	struct vu_server_cfg cfg = { .max_xfer = 32768 };
	pid_t pid = vu_server_listen(path, &cfg);
	cr_assert_gt(pid, 0);
	const char *args[] = { "--json", "--vfio-user", path, NULL };
	struct run r = run_tool(args);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	struct jv *v = parse_or_fail(&r);
	const struct jv *o = vu_obj(v);
	cr_expect_str_eq(jget(o, "version")->s, "0.2");
	cr_expect_eq(jget(o, "max_data_xfer_size")->n, 32768);
	cr_expect_eq(jget(o, "migration_pgsize")->n, 4096);
	const struct jv *regs = jget(o, "regions");
	cr_assert(regs && regs->t == J_ARR && regs->len == 1, "one non-empty region");
	cr_expect_eq(jget(regs->items[0], "index")->n, 0);
	cr_expect_eq(jget(regs->items[0], "size")->n, 4096);
	const struct jv *irqs = jget(o, "irqs");
	cr_assert(irqs && irqs->t == J_ARR && irqs->len == 2);
	cr_expect_eq(jget(irqs->items[1], "index")->n, 2);
	cr_expect_eq(jget(irqs->items[1], "count")->n, 7);
	const struct jv *f = jget(jget(o, "migration"), "flags");
	cr_assert(f && f->t == J_ARR && f->len == 2);
	cr_expect_str_eq(f->items[0]->s, "stop_copy");
	cr_expect_str_eq(f->items[1]->s, "pre_copy");
	cr_expect_eq(jget(o, "dma_logging_page_size")->n, 4096);
	jfree(v);
	run_free(&r);
	cr_expect_eq(vu_server_wait(pid, 5000), 0, "the server saw a clean session");
}

Test(probe, vfio_user_server_table_without_migration)
{
	char path[108];
	vu_path(path, sizeof(path));
	struct vu_server_cfg cfg = { .no_migration = 1 };
	pid_t pid = vu_server_listen(path, &cfg);
	cr_assert_gt(pid, 0);
	const char *args[] = { "--vfio-user", path, NULL };
	struct run r = run_tool(args);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect(strstr(r.out, "protocol 0.2"), "%s", r.out);
	cr_expect(strstr(r.out, "region 0: 0x1000 bytes, read write"), "%s", r.out);
	cr_expect(strstr(r.out, "migration: none (vfio-user "), "%s", r.out);
	cr_expect(strstr(r.out, "server error EINVAL"), "%s", r.out);
	cr_expect(strstr(r.out, "DMA logging: not available (no migration)"), "%s", r.out);
	run_free(&r);
	vu_server_wait(pid, 5000);
}

Test(probe, vfio_user_unreachable_exits_1)
{
	const char *args[] = { "--vfio-user", "/nonexistent/precopy-vu.sock", NULL };
	struct run r = run_tool(args);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "cannot connect to /nonexistent/precopy-vu.sock"), "%s", r.err);
	run_free(&r);
}


/* The host section: every capability present with its type, each one
 * agreeing with what this test finds on its own (/dev/kvm opens, the
 * IOMMU groups and NUMA nodes sysfs lists, io_uring through the library's
 * queue). */
static int entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.' && !strncmp(e->d_name, prefix, strlen(prefix));
	closedir(d);
	return n;
}

Test(probe, host_capabilities_json_and_text)
{
	char *root = fx_tree(fake_host, 3);
	const char *args[] = { "--json", "--sysfs", root, NULL };
	const char *text[] = { "--sysfs", root, NULL };
	struct run r = run_tool(args), t;
	const struct jv *h, *hp;
	int kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), groups, nodes;
	void *q = NULL;
	int aio = precopy_sys_aio_open(precopy_sys_real(), 1, 1, &q);

	if (aio == 0)
		precopy_sys_aio_close(precopy_sys_real(), q);
	cr_assert_eq(r.status, 0, "exit %d; stderr:\n%s", r.status, r.err);
	struct jv *v = parse_or_fail(&r);
	h = jget(v, "host");
	cr_assert(h && h->t == J_OBJ, "no host object");
	cr_assert_eq(jget(h, "kvm")->t, J_BOOL);
	cr_expect_eq(jget(h, "kvm")->b, kvm_fd >= 0);
	if (kvm_fd >= 0) {
		cr_expect_eq(jget(h, "kvm_api")->n, 12);
		cr_assert_eq(jget(h, "dirty_ring_max_bytes")->t, J_NUM);
		cr_assert_eq(jget(h, "manual_protect")->t, J_BOOL);
		close(kvm_fd);
	} else {
		cr_assert_eq(jget(h, "kvm_error")->t, J_STR);
	}
	cr_assert_eq(jget(h, "iommufd")->t, J_BOOL);
	cr_assert_eq(jget(h, "vfio_container")->t, J_BOOL);
	cr_assert_eq(jget(h, "vfio_pci_loaded")->t, J_BOOL);
	groups = entries("/sys/kernel/iommu_groups", "");
	nodes = entries("/sys/devices/system/node", "node");
	if (groups >= 0)
		cr_expect_eq(jget(h, "iommu_groups")->n, groups);
	if (nodes >= 0)
		cr_expect_eq(jget(h, "numa_nodes")->n, nodes);
	cr_expect_eq(jget(h, "io_uring")->b, aio == 0);
	hp = jget(h, "hugepages");
	cr_assert(hp && hp->t == J_ARR);
	for (size_t i = 0; i < hp->len; i++)
		cr_assert_geq(jget(hp->items[i], "total")->n, jget(hp->items[i], "free")->n);
	jfree(v);
	run_free(&r);

	t = run_tool(text);
	cr_assert_eq(t.status, 0);
	cr_assert(!strncmp(t.out, "host:\n  KVM ", 12), "%s", t.out);
	cr_assert(strstr(t.out, "  io_uring       "), "%s", t.out);
	cr_assert(strstr(t.out, "  NUMA nodes     "), "%s", t.out);
	cr_assert(strstr(t.out, "\nADDRESS "), "the PCI table follows: %s", t.out);
	run_free(&t);
	fx_tree_rm(root);
}
