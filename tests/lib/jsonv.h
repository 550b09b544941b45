/* SPDX-License-Identifier: MIT */
/* tests/lib/jsonv.h — a small strict JSON parser (RFC 8259: one value,
 * nothing after it but white space, no trailing commas, no leading zeros,
 * strings with valid escapes and no raw control bytes) into a tree, and a
 * checker of the statistics schema (docs/stats-json.md) that
 * precopy_engine_stats_json() and precopy-sim --json share. Test-only.
 *
 * Thread safety: each tree is its own; no global state.
 */
#ifndef TESTS_LIB_JSONV_H
#define TESTS_LIB_JSONV_H

#include <stddef.h>

enum jv_type { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ };

struct jv {
	enum jv_type type;
	char *key;          /* member name inside an object, else NULL */
	char *str;          /* JV_STR: the decoded string (\u escapes as UTF-8) */
	double num;         /* JV_NUM; JV_BOOL: 0 or 1 */
	int integer;        /* JV_NUM written without fraction or exponent */
	struct jv *kids;    /* JV_ARR / JV_OBJ: nkids values in order */
	size_t nkids;
};

/* Parse text (NUL-terminated). Returns the tree (free with jv_free) or
 * NULL with a message saying where and why in err. */
struct jv *jv_parse(const char *text, char *err, size_t err_len);
void jv_free(struct jv *v);

/* The member of object o named key, or NULL (also when o is no object). */
const struct jv *jv_get(const struct jv *o, const char *key);

/* Schema types: one letter each.
 *   o object, a array, s string, b bool, i integer >= 0, n number >= 0,
 *   upper case: that type or null (S, I, N, B). */
struct jv_field {
	const char *name;
	char type;
};

/* Check that o is an object with exactly the fields of `fields` (n of them,
 * in that order when ordered) plus, when extra is non-zero, others after
 * them. Returns 0, or -1 with the first problem in err. */
int jv_check_fields(const struct jv *o, const struct jv_field *fields, size_t n, int extra, char *err,
		    size_t err_len);

/* The statistics object (schema version 3): its top level, "ram", each of
 * "devices"; the simulator's fields after them and each of its
 * "iterations-detail". */
extern const struct jv_field jv_stats_fields[];
extern const size_t jv_stats_nfields;
extern const struct jv_field jv_stats_ram_fields[];
extern const size_t jv_stats_ram_nfields;
extern const struct jv_field jv_stats_dev_fields[];
extern const size_t jv_stats_dev_nfields;
extern const struct jv_field jv_sim_fields[];
extern const size_t jv_sim_nfields;
extern const struct jv_field jv_sim_iter_fields[];
extern const size_t jv_sim_iter_nfields;

/* The whole statistics object: top-level fields (with sim's after them
 * when sim is non-zero, nothing else otherwise), "ram", each device, each
 * iteration (sim), and the values' ranges ("schema-version" 3, "status"
 * one of its names, "blocked-reasons" known names). Returns 0 or -1 with
 * err. */
int jv_check_stats(const struct jv *o, int sim, char *err, size_t err_len);

#endif /* TESTS_LIB_JSONV_H */
