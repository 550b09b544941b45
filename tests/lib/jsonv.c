/* SPDX-License-Identifier: MIT */
/* A strict JSON parser into a tree and the statistics schema (jsonv.h). */
#include "jsonv.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jp {
	const char *s, *p;
	char *err;
	size_t err_len;
	int failed;
	int depth;
};

static int fail(struct jp *j, const char *why)
{
	if (!j->failed)
		snprintf(j->err, j->err_len, "offset %zu: %s", (size_t)(j->p - j->s), why);
	j->failed = 1;
	return -1;
}

static void ws(struct jp *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static int hex4(struct jp *j, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = j->p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return fail(j, "bad \\u escape");
	}
	j->p += 4;
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80)
		return o[0] = (char)cp, 1;
	if (cp < 0x800)
		return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
	if (cp < 0x10000)
		return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
		       o[2] = (char)(0x80 | (cp & 0x3f)), 3;
	return o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
	       o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f)), 4;
}

static char *string(struct jp *j)
{
	const char *start = ++j->p; /* after the quote */
	char *out, *o;

	while (*j->p && *j->p != '"') /* find the end; the escapes are checked below */
		j->p += *j->p == '\\' && j->p[1] ? 2 : 1;
	if (*j->p != '"')
		return fail(j, "unterminated string"), NULL;
	out = o = malloc((size_t)(j->p - start) + 1);
	if (!out)
		return fail(j, "out of memory"), NULL;
	j->p = start;
	while (*j->p != '"') {
		unsigned char c = (unsigned char)*j->p;

		if (c < 0x20) {
			free(out);
			return fail(j, "raw control byte in a string"), NULL;
		}
		if (c != '\\') {
			*o++ = (char)c;
			j->p++;
			continue;
		}
		j->p++;
		switch (*j->p++) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			unsigned cp, lo;

			if (hex4(j, &cp) < 0)
				return free(out), NULL;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->p[0] != '\\' || j->p[1] != 'u')
					return free(out), fail(j, "lone high surrogate"), NULL;
				j->p += 2;
				if (hex4(j, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					return free(out), fail(j, "bad low surrogate"), NULL;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				return free(out), fail(j, "lone low surrogate"), NULL;
			}
			o += put_utf8(o, cp);
			break;
		}
		default:
			free(out);
			return fail(j, "bad escape"), NULL;
		}
	}
	j->p++;
	*o = 0;
	return out;
}

static int number(struct jp *j, struct jv *v)
{
	const char *s = j->p;
	char *end;

	v->integer = 1;
	if (*j->p == '-')
		j->p++;
	if (*j->p == '0')
		j->p++;
	else if (*j->p >= '1' && *j->p <= '9')
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	else
		return fail(j, "bad number");
	if (*j->p == '.') {
		v->integer = 0;
		j->p++;
		if (!(*j->p >= '0' && *j->p <= '9'))
			return fail(j, "no digit after the point");
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (*j->p == 'e' || *j->p == 'E') {
		v->integer = 0;
		j->p++;
		if (*j->p == '+' || *j->p == '-')
			j->p++;
		if (!(*j->p >= '0' && *j->p <= '9'))
			return fail(j, "no digit in the exponent");
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	v->type = JV_NUM;
	v->num = strtod(s, &end);
	return end == j->p ? 0 : fail(j, "number not read whole");
}

static int value(struct jp *j, struct jv *v);
static void free_kids(struct jv *v);

static int push(struct jp *j, struct jv *parent, struct jv *kid)
{
	struct jv *n = realloc(parent->kids, (parent->nkids + 1) * sizeof(*n));

	if (!n)
		return fail(j, "out of memory");
	parent->kids = n;
	n[parent->nkids++] = *kid;
	return 0;
}

static int container(struct jp *j, struct jv *v, char close)
{
	v->type = close == '}' ? JV_OBJ : JV_ARR;
	if (++j->depth > 64)
		return fail(j, "nested too deep");
	j->p++;
	ws(j);
	if (*j->p == close) {
		j->p++;
		j->depth--;
		return 0;
	}
	for (;;) {
		struct jv kid;

		memset(&kid, 0, sizeof(kid));
		ws(j);
		if (v->type == JV_OBJ) {
			if (*j->p != '"')
				return fail(j, "member name expected");
			if (!(kid.key = string(j)))
				return -1;
			ws(j);
			if (*j->p++ != ':')
				return free(kid.key), fail(j, "':' expected");
		}
		if (value(j, &kid) < 0 || push(j, v, &kid) < 0) {
			free_kids(&kid);
			free(kid.key);
			free(kid.str);
			return -1;
		}
		ws(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p == close) {
			j->p++;
			j->depth--;
			return 0;
		}
		return fail(j, "',' or the container's end expected");
	}
}

static int value(struct jp *j, struct jv *v)
{
	ws(j);
	switch (*j->p) {
	case '{': return container(j, v, '}');
	case '[': return container(j, v, ']');
	case '"':
		v->type = JV_STR;
		return (v->str = string(j)) ? 0 : -1;
	case 't':
		if (strncmp(j->p, "true", 4))
			return fail(j, "bad literal");
		j->p += 4;
		v->type = JV_BOOL;
		v->num = 1;
		return 0;
	case 'f':
		if (strncmp(j->p, "false", 5))
			return fail(j, "bad literal");
		j->p += 5;
		v->type = JV_BOOL;
		return 0;
	case 'n':
		if (strncmp(j->p, "null", 4))
			return fail(j, "bad literal");
		j->p += 4;
		v->type = JV_NULL;
		return 0;
	default:
		return number(j, v);
	}
}

static void free_kids(struct jv *v)
{
	for (size_t i = 0; i < v->nkids; i++) {
		free_kids(&v->kids[i]);
		free(v->kids[i].key);
		free(v->kids[i].str);
	}
	free(v->kids);
	v->kids = NULL;
	v->nkids = 0;
}

void jv_free(struct jv *v)
{
	if (!v)
		return;
	free_kids(v);
	free(v->key);
	free(v->str);
	free(v);
}

struct jv *jv_parse(const char *text, char *err, size_t err_len)
{
	struct jp j = { text, text, err, err_len, 0, 0 };
	struct jv *v = calloc(1, sizeof(*v));

	if (!v)
		return snprintf(err, err_len, "out of memory"), NULL;
	if (value(&j, v) == 0) {
		ws(&j);
		if (*j.p)
			fail(&j, "text after the value");
	}
	if (j.failed) {
		free_kids(v);
		free(v->str);
		free(v);
		return NULL;
	}
	return v;
}

const struct jv *jv_get(const struct jv *o, const char *key)
{
	if (!o || o->type != JV_OBJ)
		return NULL;
	for (size_t i = 0; i < o->nkids; i++)
		if (!strcmp(o->kids[i].key, key))
			return &o->kids[i];
	return NULL;
}

static int say(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

static int type_ok(const struct jv *v, char t)
{
	if (t >= 'A' && t <= 'Z') {
		if (v->type == JV_NULL)
			return 1;
		t = (char)(t - 'A' + 'a');
	}
	switch (t) {
	case 'o': return v->type == JV_OBJ;
	case 'a': return v->type == JV_ARR;
	case 's': return v->type == JV_STR;
	case 'b': return v->type == JV_BOOL;
	case 'i': return v->type == JV_NUM && v->integer && v->num >= 0;
	case 'n': return v->type == JV_NUM && v->num >= 0;
	default: return 0;
	}
}

int jv_check_fields(const struct jv *o, const struct jv_field *f, size_t n, int extra, char *err, size_t len)
{
	if (!o || o->type != JV_OBJ)
		return say(err, len, "not an object");
	if (o->nkids < n || (!extra && o->nkids != n))
		return say(err, len, "%zu members, want %s%zu", o->nkids, extra ? "at least " : "", n);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(o->kids[i].key, f[i].name))
			return say(err, len, "member %zu is \"%s\", want \"%s\"", i, o->kids[i].key, f[i].name);
		if (!type_ok(&o->kids[i], f[i].type))
			return say(err, len, "\"%s\": type %d, want '%c'", f[i].name, (int)o->kids[i].type, f[i].type);
	}
	for (size_t i = n; i < o->nkids; i++)
		for (size_t k = 0; k < i; k++)
			if (!strcmp(o->kids[i].key, o->kids[k].key))
				return say(err, len, "\"%s\" twice", o->kids[i].key);
	return 0;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

const struct jv_field jv_stats_fields[] = {
	{ "schema-version", 'i' }, { "status", 's' },       { "total-time", 'n' },
	{ "setup-time", 'n' },     { "downtime", 'N' },     { "expected-downtime", 'N' },
	{ "downtime-limit", 'n' }, { "ram", 'o' },          { "cpu-throttle-percentage", 'i' },
	{ "iterations", 'i' },     { "action", 'S' },       { "blocked-reasons", 'a' },
	{ "stalled", 'b' },        { "stalled-since", 'N' }, { "device", 'o' },
	{ "devices", 'a' },        { "error", 'S' },
};
const size_t jv_stats_nfields = N(jv_stats_fields);

const struct jv_field jv_stats_ram_fields[] = {
	{ "transferred", 'i' }, { "remaining", 'i' },        { "total", 'i' },     { "dirty-sync-count", 'i' },
	{ "mbps", 'n' },        { "dirty-pages-rate", 'i' }, { "page-size", 'i' },
};
const size_t jv_stats_ram_nfields = N(jv_stats_ram_fields);

const struct jv_field jv_stats_dev_fields[] = {
	{ "id", 'i' },           { "name", 'S' },          { "kind", 's' },
	{ "state", 's' },        { "tracking", 'S' },      { "stop-copy", 'I' },
	{ "stop-copy-guessed", 'b' }, { "pre-copy-pending", 'i' }, { "pre-copy-sent", 'i' },
	{ "transferred", 'i' },  { "transitions", 'i' },   { "transition-time", 'n' },
};
const size_t jv_stats_dev_nfields = N(jv_stats_dev_fields);

const struct jv_field jv_sim_fields[] = {
	{ "scenario", 's' },     { "policy", 's' },        { "outcome", 's' },
	{ "limit-met", 'b' },    { "ack-wait", 'n' },      { "ack-at", 'N' },
	{ "max-throttle", 'i' }, { "first-stall", 'N' },   { "reason", 'S' },
	{ "downtime-breakdown", 'o' }, { "final-ram-bytes", 'i' }, { "iterations-detail", 'a' },
};
const size_t jv_sim_nfields = N(jv_sim_fields);

const struct jv_field jv_sim_iter_fields[] = {
	{ "iteration", 'i' },    { "t", 'n' },              { "dirty-pages", 'i' },  { "page-writes", 'i' },
	{ "bytes-sent", 'i' },   { "ram-bytes", 'i' },      { "device-bytes", 'i' }, { "bandwidth", 'i' },
	{ "pending-bytes", 'i' }, { "expected-downtime", 'N' }, { "rho", 'N' },      { "throttle", 'i' },
	{ "action", 's' },       { "blocked-reasons", 'a' }, { "stalled", 'b' },
};
const size_t jv_sim_iter_nfields = N(jv_sim_iter_fields);

static int one_of(const char *s, const char *const *names)
{
	for (; *names; names++)
		if (!strcmp(s, *names))
			return 1;
	return 0;
}

static int check_reasons(const struct jv *a, const char *where, char *err, size_t len)
{
	static const char *const names[] = { "downtime", "unknown_size", "initial_bytes", "ack",
					     "no_bandwidth", "device_floor", "working_set", NULL };

	for (size_t i = 0; i < a->nkids; i++)
		if (a->kids[i].type != JV_STR || !one_of(a->kids[i].str, names))
			return say(err, len, "%s: blocked reason %zu is not a known name", where, i);
	return 0;
}

int jv_check_stats(const struct jv *o, int sim, char *err, size_t len)
{
	static const char *const statuses[] = { "none", "active", "device", "completed", "failed", "cancelled", NULL };
	static const char *const kinds[] = { "vfio", "vfio-user", NULL };
	static const char *const tracking[] = { "dma-log", "tracker", "all-dirty", NULL };
	char sub[256];
	const struct jv *v, *devs;

	if (jv_check_fields(o, jv_stats_fields, jv_stats_nfields, sim, sub, sizeof(sub)) < 0)
		return say(err, len, "top level: %s", sub);
	if (jv_get(o, "schema-version")->num != 3)
		return say(err, len, "schema-version %g, want 3", jv_get(o, "schema-version")->num);
	if (!one_of(jv_get(o, "status")->str, statuses))
		return say(err, len, "status \"%s\" unknown", jv_get(o, "status")->str);
	if (jv_check_fields(jv_get(o, "ram"), jv_stats_ram_fields, jv_stats_ram_nfields, 0, sub, sizeof(sub)) < 0)
		return say(err, len, "ram: %s", sub);
	if (jv_check_fields(jv_get(o, "device"), (const struct jv_field[]){ { "transferred", 'i' } }, 1, 0, sub,
			    sizeof(sub)) < 0)
		return say(err, len, "device: %s", sub);
	if (check_reasons(jv_get(o, "blocked-reasons"), "top level", err, len) < 0)
		return -1;
	devs = jv_get(o, "devices");
	for (size_t i = 0; i < devs->nkids; i++) {
		v = &devs->kids[i];
		if (jv_check_fields(v, jv_stats_dev_fields, jv_stats_dev_nfields, 0, sub, sizeof(sub)) < 0)
			return say(err, len, "devices[%zu]: %s", i, sub);
		if (!one_of(jv_get(v, "kind")->str, kinds))
			return say(err, len, "devices[%zu]: kind \"%s\"", i, jv_get(v, "kind")->str);
		if (jv_get(v, "tracking")->type == JV_STR && !one_of(jv_get(v, "tracking")->str, tracking))
			return say(err, len, "devices[%zu]: tracking \"%s\"", i, jv_get(v, "tracking")->str);
	}
	if (!sim)
		return 0;
	for (size_t i = 0; i < jv_sim_nfields; i++) {
		const struct jv *m = &o->kids[jv_stats_nfields + i];

		if (jv_stats_nfields + i >= o->nkids)
			return say(err, len, "no \"%s\"", jv_sim_fields[i].name);
		if (strcmp(m->key, jv_sim_fields[i].name) || !type_ok(m, jv_sim_fields[i].type))
			return say(err, len, "member \"%s\" where \"%s\" ('%c') was due", m->key, jv_sim_fields[i].name,
				   jv_sim_fields[i].type);
	}
	if (o->nkids != jv_stats_nfields + jv_sim_nfields)
		return say(err, len, "%zu members, want %zu", o->nkids, jv_stats_nfields + jv_sim_nfields);
	if (jv_check_fields(jv_get(o, "downtime-breakdown"),
			    (const struct jv_field[]){ { "switchover", 'n' }, { "final-ram", 'n' }, { "dest-load", 'n' },
						       { "fixed", 'n' }, { "dest-resume", 'n' } },
			    5, 0, sub, sizeof(sub)) < 0)
		return say(err, len, "downtime-breakdown: %s", sub);
	v = jv_get(o, "iterations-detail");
	for (size_t i = 0; i < v->nkids; i++) {
		if (jv_check_fields(&v->kids[i], jv_sim_iter_fields, jv_sim_iter_nfields, 0, sub, sizeof(sub)) < 0)
			return say(err, len, "iterations-detail[%zu]: %s", i, sub);
		if (check_reasons(jv_get(&v->kids[i], "blocked-reasons"), "iteration", err, len) < 0)
			return -1;
	}
	return 0;
}
