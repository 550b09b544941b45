/* SPDX-License-Identifier: MIT */
/* precopy-sim's outputs through the built program: the CSV timeline agrees
 * with the JSON, the SVG is a complete document with the parts an operator
 * reads, and the exit status says how the run ended. The program is found
 * next to this test's build directory (build/tests/.. -> build/precopy-sim). */
#include <criterion/criterion.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "precopy/engine.h"
#include "precopy/estimator.h"
#include "../sim/simulator.h"
#include "lib/jsonv.h"

static char sim[PATH_MAX];

static void find_sim(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	cr_assert_gt(n, 0, "readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = 0;
	snprintf(sim, sizeof(sim), "%s/../precopy-sim", dirname(exe));
	if (access(sim, X_OK))
		cr_skip_test("%s not built (make test builds it)", sim);
}

/* Run a shell command; return its exit status and its stdout in out. */
static int run(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	size_t got = 0;
	int st;

	cr_assert_not_null(p, "popen %s", cmd);
	while (out && got + 1 < len) {
		size_t r = fread(out + got, 1, len - 1 - got, p);

		if (!r)
			break;
		got += r;
	}
	if (out)
		out[got] = 0;
	st = pclose(p);
	cr_assert(WIFEXITED(st), "%s did not exit", cmd);
	return WEXITSTATUS(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	static char buf[1 << 20];
	size_t n;

	cr_assert_not_null(f, "open %s", path);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static long json_int(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	cr_assert_not_null(p, "no %s in %.200s", key, json);
	return strtol(p + strlen(pat), NULL, 10);
}

Test(sim_output, csv_rows_match_json_iterations)
{
	static char json[1 << 20];
	char cmd[PATH_MAX * 2], *csv;
	long iters, rows = 0;

	find_sim();
	snprintf(cmd, sizeof(cmd), "%s --json --csv /tmp/precopy-sim-test-%d.csv", sim, getpid());
	cr_assert_eq(run(cmd, json, sizeof(json)), 0, "built-in scenario should switch over");
	iters = json_int(json, "iterations");
	snprintf(cmd, sizeof(cmd), "/tmp/precopy-sim-test-%d.csv", getpid());
	csv = slurp(cmd);
	unlink(cmd);
	cr_assert(!strncmp(csv, "iteration,t_ms,dirty_pages,", 27), "header: %.80s", csv);
	for (char *l = strchr(csv, '\n'); l && l[1]; l = strchr(l + 1, '\n'))
		rows++;
	cr_expect_eq(rows, iters, "CSV has %ld rows, JSON %ld iterations", rows, iters);
	cr_expect(strstr(csv, "\n1,"), "first iteration row");
	/* schema 3: its version, query-migrate's RAM names, blocked reasons by name */
	cr_expect_eq(json_int(json, "schema-version"), PRECOPY_STATS_JSON_SCHEMA);
	cr_expect(strstr(json, "\"ram\":{\"transferred\":") && strstr(json, "\"page-size\":4096"), "%.300s", json);
	cr_expect(strstr(json, "\"blocked-reasons\":[\"downtime\""), "no iteration blocked by name: %.300s", json);
	cr_expect(strstr(json, "\"blocked-reasons\":[]"), "the switchover decision is blocked by nothing");
	{
		char b[64];

		cr_expect_eq(precopy_blocked_json(PRECOPY_BLOCK_DOWNTIME | PRECOPY_BLOCK_ACK, b, sizeof(b)),
			     (int)strlen("[\"downtime\",\"ack\"]"));
		cr_expect_str_eq(b, "[\"downtime\",\"ack\"]");
		cr_expect_eq(precopy_blocked_json(0, b, sizeof(b)), 2);
		cr_expect_str_eq(b, "[]");
		cr_expect_eq(precopy_blocked_json(PRECOPY_BLOCK_WORKING_SET, b, 6), 15, "the length needed");
		cr_expect_str_eq(b, "[\"wor");
		cr_expect_str_eq(precopy_block_name(1u << 30), "unknown");
	}
}

Test(sim_output, svg_is_complete_and_labelled)
{
	char cmd[PATH_MAX * 2], path[64], *svg;

	find_sim();
	snprintf(path, sizeof(path), "/tmp/precopy-sim-test-%d.svg", getpid());
	snprintf(cmd, sizeof(cmd), "%s --svg %s > /dev/null", sim, path);
	cr_assert_eq(run(cmd, NULL, 0), 0);
	svg = slurp(path);
	unlink(path);
	cr_expect(strstr(svg, "<svg"), "no <svg> element");
	cr_expect(strstr(svg, "</svg>"), "document not closed");
	cr_expect(strstr(svg, "downtime limit"), "limit line not labelled");
	cr_expect(strstr(svg, "switchover"), "switchover not marked");
	cr_expect(strstr(svg, "<polyline") || strstr(svg, "<path"), "no curve drawn");
	{
		/* two panels, each with its own axis label; units as the text's */
		int panels = 0;

		for (const char *p = svg; (p = strstr(p, "fill=\"none\" stroke=\"#888\"")); p++)
			panels++;
		cr_expect_eq(panels, 2, "%d plot frames, want 2 panels", panels);
		cr_expect(strstr(svg, ">pending (RAM + device)<"), "bytes panel unlabelled");
		cr_expect(strstr(svg, ">expected downtime<"), "downtime panel unlabelled");
		cr_expect(strstr(svg, "iB<") && !strstr(svg, " GB<") && !strstr(svg, " MB<"), "bytes ticks not in KiB/MiB/GiB");
		cr_expect(strstr(svg, ">throttled<") && strstr(svg, ">waiting for the ACK<"), "legend lacks the bands");
	}
}

/* The progress line: at most 79 columns, naming the phase. */
Test(sim_output, progress_line_fits_and_names_the_phase)
{
	struct sim_iter it = { .iteration = 3, .pending_bytes = 123456789012ull, .expected_downtime_ns = 5000000000ull,
			       .throttle = 20, .action = PRECOPY_CONTINUE, .ram_bytes = 1ull << 30 };
	struct sim_result r = { .memory = 4ull << 30, .iters = &it, .niters = 1 };
	static const struct {
		uint32_t action;
		uint64_t memory;
		const char *phase;
	} cases[] = {
		{ PRECOPY_CONTINUE, 4ull << 30, "first pass  25%" },
		{ PRECOPY_CONTINUE, 1ull << 30, "iterating" },
		{ PRECOPY_WAIT_ACK, 1ull << 30, "waiting for switchover-ack" },
		{ PRECOPY_SWITCHOVER, 1ull << 30, "switchover" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		cr_assert(f);
		it.action = cases[i].action;
		r.memory = cases[i].memory;
		sim_report_progress(f, &r, &it, 987654321000ull);
		fclose(f);
		cr_assert_eq(buf[0], '\r');
		cr_assert_leq(strlen(buf + 1), 79u, "%zu columns: \"%s\"", strlen(buf + 1), buf + 1);
		cr_assert(strstr(buf, cases[i].phase), "case %zu: \"%s\" lacks \"%s\"", i, buf + 1, cases[i].phase);
		free(buf);
	}
}

Test(sim_output, exit_status_of_a_bad_scenario_and_a_cancel)
{
	char cmd[PATH_MAX * 2], out[4096];
	char path[64];
	FILE *f;

	find_sim();
	snprintf(path, sizeof(path), "/tmp/precopy-sim-bad-%d.ini", getpid());
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("[vm]\nmemory = 64Q\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", sim, path);
	cr_expect_eq(run(cmd, out, sizeof(out)), 2, "bad unit: %s", out);
	cr_expect(strstr(out, ":2") && strstr(out, "memory"), "message names line and key: %s", out);

	/* rho >= 1, no throttling, a short timeout and timeout_action=cancel */
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("[vm]\nmemory = 1G\n[workload]\nmodel = uniform\nrate = 2G/s\n"
	      "[link]\nbandwidth = 1Gbit/s\n[migration]\ntimeout = 20s\ntimeout_action = cancel\nthrottle_initial = 0\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s --json %s", sim, path);
	static char json[1 << 20];
	cr_expect_eq(run(cmd, json, sizeof(json)), 3, "cancel exit: %.300s", json);
	cr_expect(strstr(json, "\"outcome\":\"cancelled\""), "%.300s", json);
	unlink(path);
}

/* --seed and [workload] seed: one rule (the parser's), one message */
Test(sim_output, seed_on_the_command_line_follows_the_file_rule)
{
	static const char *const bad[] = { "-1", "+1", " 1", "1x", "0x10", "18446744073709551616", "" };
	char cmd[PATH_MAX * 2], out[4096];

	find_sim();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s --seed '%s' --json 2>&1 >/dev/null", sim, bad[i]);
		cr_expect_eq(run(cmd, out, sizeof(out)), 2, "--seed '%s' accepted: %s", bad[i], out);
		cr_expect(strstr(out, "precopy-sim: --seed: [workload] seed: "), "--seed '%s': %s", bad[i], out);
	}
	snprintf(cmd, sizeof(cmd), "%s --seed 18446744073709551615 --json >/dev/null", sim);
	cr_expect_eq(run(cmd, NULL, 0), 0, "the largest seed is refused");
}

/* stdout and every output file are flushed and closed with their errors
 * checked: a full disk is exit 1 with a message, never a silent 0 */
Test(sim_output, unwritable_stdout_or_file_is_exit_1_with_a_message)
{
	static const char *const cases[][2] = {
		{ "--json", "precopy-sim: stdout: write error: No space left on device" },
		{ "", "precopy-sim: stdout: write error: No space left on device" },
		{ "--print-default", "precopy-sim: stdout: write error: No space left on device" },
		{ "--help", "precopy-sim: stdout: write error: No space left on device" },
	};
	char cmd[PATH_MAX * 2], out[4096];

	find_sim();
	if (access("/dev/full", W_OK))
		cr_skip_test("no /dev/full");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s --no-progress %s 2>&1 >/dev/full", sim, cases[i][0]);
		cr_expect_eq(run(cmd, out, sizeof(out)), 1, "%s: %s", cases[i][0], out);
		cr_expect(strstr(out, cases[i][1]), "%s: %s", cases[i][0], out);
	}
	snprintf(cmd, sizeof(cmd), "%s --csv /dev/full --svg /dev/full 2>&1 >/dev/null", sim);
	cr_expect_eq(run(cmd, out, sizeof(out)), 1, "%s", out);
	cr_expect(strstr(out, "precopy-sim: --csv /dev/full: write error: No space left on device"), "%s", out);
	cr_expect(strstr(out, "precopy-sim: --svg /dev/full: write error: No space left on device"), "%s", out);
}

/* an output that cannot be opened is a usage error found before the run */
Test(sim_output, unopenable_output_is_exit_2_before_the_run)
{
	static const char *const opts[] = { "--csv", "--svg" };
	char cmd[PATH_MAX * 2], out[4096], want[256];

	find_sim();
	for (size_t i = 0; i < 2; i++) {
		snprintf(cmd, sizeof(cmd), "%s --json %s /nonexistent/out 2>&1", sim, opts[i]);
		cr_expect_eq(run(cmd, out, sizeof(out)), 2, "%s: %s", opts[i], out);
		snprintf(want, sizeof(want), "precopy-sim: %s /nonexistent/out: cannot open for writing: No such file or "
					     "directory\n", opts[i]);
		cr_expect_str_eq(out, want, "no run, no JSON, one message");
	}
}

/* precopy-sim --json is the library's statistics object (every field of
 * schema 3, in its order and types) followed by the simulator's own
 * fields: parsed strictly, on scenarios that end in each way and with
 * devices of each sort. The shared part agrees with the run's figures, and
 * "stalled" stays true from the first stall to the end of a stall. */
Test(sim_output, json_schema_of_every_field)
{
	static const struct {
		const char *file;
		int exit;
		const char *outcome;
		uint32_t ndevs;
	} cases[] = {
		{ "", 0, "switchover", 1 },
		{ "gpu.ini", 0, "switchover", 1 },
		{ "many-devices.ini", 0, "switchover", 8 },
		{ "nonconverging.ini", 3, "cancelled", 0 },
	};
	static char json[1 << 21];
	char cmd[PATH_MAX * 2], dir[PATH_MAX], err[512];

	find_sim();
	snprintf(dir, sizeof(dir), "%s", sim);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct jv *v, *it, *devs;
		struct jv *o;
		int first_stall = -1;

		if (cases[c].file[0])
			snprintf(cmd, sizeof(cmd), "%s --json %s/../sim/scenarios/%s", sim, dirname(dir), cases[c].file);
		else
			snprintf(cmd, sizeof(cmd), "%s --json", sim);
		snprintf(dir, sizeof(dir), "%s", sim);
		cr_assert_eq(run(cmd, json, sizeof(json)), cases[c].exit, "%s", cmd);
		o = jv_parse(json, err, sizeof(err));
		cr_assert_not_null(o, "%s: not JSON: %s", cmd, err);
		cr_assert_eq(jv_check_stats(o, 1, err, sizeof(err)), 0, "%s: %s", cmd, err);
		cr_expect_str_eq(jv_get(o, "outcome")->str, cases[c].outcome, "%s", cmd);
		cr_expect_str_eq(jv_get(o, "status")->str, cases[c].exit ? "cancelled" : "completed", "%s", cmd);
		devs = jv_get(o, "devices");
		cr_expect_eq(devs->nkids, cases[c].ndevs, "%s", cmd);
		{
			double sum = 0;

			for (size_t i = 0; i < devs->nkids; i++) {
				const struct jv *d = &devs->kids[i];

				sum += jv_get(d, "transferred")->num;
				cr_expect_leq(jv_get(d, "pre-copy-sent")->num, jv_get(d, "transferred")->num);
				cr_expect_str_eq(jv_get(d, "tracking")->str, "dma-log", "%s: device %zu", cmd, i);
				cr_expect_eq(jv_get(d, "stop-copy-guessed")->type, JV_BOOL);
				cr_expect_eq(jv_get(d, "stop-copy-guessed")->num, 0, "a VFIO device answers its size");
				cr_expect_eq(jv_get(d, "stop-copy")->type, JV_NUM, "%s: device %zu: size known", cmd, i);
				cr_expect_gt(jv_get(d, "transitions")->num, 0);
				cr_expect_gt(jv_get(d, "transition-time")->num, 0);
			}
			cr_expect_eq(sum, jv_get(jv_get(o, "device"), "transferred")->num, "%s: devices add up", cmd);
		}
		if (!cases[c].exit) {
			cr_expect_eq(jv_get(o, "limit-met")->type, JV_BOOL);
			cr_expect_eq(jv_get(o, "downtime")->type, JV_NUM, "%s: downtime after completion", cmd);
			cr_expect_eq(jv_get(jv_get(o, "ram"), "remaining")->num, 0);
		} else {
			cr_expect_eq(jv_get(o, "downtime")->type, JV_NULL, "%s: no downtime without switchover", cmd);
			cr_expect_eq(jv_get(o, "stalled")->num, 1, "%s: cancelled while stalled", cmd);
			cr_expect_eq(jv_get(o, "stalled-since")->type, JV_NUM);
		}
		it = jv_get(o, "iterations-detail");
		cr_expect_eq((double)it->nkids, jv_get(o, "iterations")->num, "%s", cmd);
		for (size_t i = 0; i < it->nkids; i++) {
			v = &it->kids[i];
			if (first_stall < 0 && jv_get(v, "stalled")->num)
				first_stall = (int)i;
			/* once stalled, stalled until a decision meets the limit */
			if (first_stall >= 0 && !jv_get(v, "stalled")->num)
				cr_expect_eq(jv_get(v, "blocked-reasons")->nkids, 0,
					     "%s: iteration %zu: the stall ended while still blocked", cmd, i + 1);
		}
		if (c == 0) {
			/* the checker can fail: a type changed, a field renamed */
			static const char *const from[] = { "\"stalled\":false", "\"setup-time\":", "\"page-size\":4096",
							    "\"transitions\":5" };
			static const char *const to[] = { "\"stalled\":0", "\"setup_time\":", "\"page-size\":\"4K\"",
							  "\"transitions\":-5" };

			for (size_t m = 0; m < sizeof(from) / sizeof(from[0]); m++) {
				static char bad[1 << 21];
				const char *at = strstr(json, from[m]);
				struct jv *b;

				cr_assert_not_null(at, "%s not in the output", from[m]);
				snprintf(bad, sizeof(bad), "%.*s%s%s", (int)(at - json), json, to[m], at + strlen(from[m]));
				b = jv_parse(bad, err, sizeof(err));
				cr_assert_not_null(b, "%s", err);
				cr_expect_eq(jv_check_stats(b, 1, err, sizeof(err)), -1, "%s -> %s accepted", from[m], to[m]);
				jv_free(b);
			}
		}
		if (cases[c].exit) {
			cr_expect_geq(first_stall, 0, "%s: never stalled", cmd);
			cr_expect_eq(jv_get(o, "first-stall")->num, jv_get(&it->kids[first_stall], "t")->num);
		}
		jv_free(o);
	}
}

/* The strict parser itself refuses what is not JSON. */
Test(sim_output, jsonv_refuses_bad_json)
{
	static const char *const bad[] = { "", "{", "{\"a\":1,}", "[1,]", "01", "1.", "-", "\"\\x\"", "\"a\nb\"",
					   "{\"a\" 1}", "tru", "[1] 2", "\"\\ud800\"", "{1:2}", "nul" };
	static const char *const good[] = { "{}", "[]", "0", "-1.5e+3", "\"\\u00e9\\ud83d\\ude00\"", " {\"a\":[null,true,false]} " };
	char err[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct jv *v = jv_parse(bad[i], err, sizeof(err));

		cr_expect_null(v, "accepted: %s", bad[i]);
		jv_free(v);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct jv *v = jv_parse(good[i], err, sizeof(err));

		cr_expect_not_null(v, "refused %s: %s", good[i], err);
		jv_free(v);
	}
}

/* The first pass is sampled, not drawn as a straight line from t = 0 to
 * the first decision: with questions inside passes (decide_window 100 ms)
 * and without (0), the run records pending bytes every 100 ms of link
 * time, falling through the pass, and the SVG's pending curve has those
 * points between t = 0 and the first decision. */
Test(sim_output, svg_samples_the_first_pass)
{
	static const char *const windows[] = { "100ms", "0ms" };

	for (size_t w = 0; w < 2; w++) {
		struct sim_scenario sc;
		struct sim_result res;
		char text[512], err[256], *svg = NULL, *p;
		size_t len = 0, inside = 0, before = 0;
		double x1, tmax;
		uint64_t prev = UINT64_MAX;
		FILE *f;

		snprintf(text, sizeof(text),
			 "[vm]\nmemory = 4G\n[workload]\nrate = 50M/s\n[link]\nbandwidth = 10Gbit/s\n"
			 "[migration]\ndecide_window = %s\n[device.nic0]\ninitial = 64M\nstop_copy = 32M\n",
			 windows[w]);
		cr_assert_eq(sim_scenario_parse_string(&sc, "first-pass", text, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(sim_run(&sc, &res, NULL, NULL), 0, "%s", res.error);
		cr_assert_eq(res.outcome, SIM_SWITCHOVER, "%s", res.error);
		cr_assert_gt(res.niters, 0);
		for (size_t i = 0; i < res.nsamples && res.samples[i].t_ns < res.iters[0].t_ns; i++) {
			cr_expect_lt(res.samples[i].pending_bytes, prev, "window %s: sample %zu does not fall", windows[w], i);
			prev = res.samples[i].pending_bytes;
			before++;
		}
		/* 4 GiB at 1.25 GB/s: 3.4 s of pass, a sample every 100 ms */
		cr_expect_geq(before, 30, "window %s: %zu samples inside the first pass", windows[w], before);
		f = open_memstream(&svg, &len);
		cr_assert_not_null(f);
		cr_assert_eq(sim_report_svg(f, &sc, &res), 0);
		fclose(f);
		p = strstr(svg, "stroke=\"#1f5fbf\" stroke-width=\"2\" points=\"");
		cr_assert_not_null(p, "no pending curve");
		p = strchr(p, 'p') + strlen("points=\"");
		tmax = (double)res.total_ns / 1e9;
		x1 = 100.0 + ((double)res.iters[0].t_ns / 1e9) / tmax * 800.0; /* PL + t / tmax * (PR - PL) */
		while (*p && *p != '"') {
			double x = strtod(p, &p);

			cr_assert_eq(*p, ',', "bad point list at %.20s", p);
			strtod(p + 1, &p);
			while (*p == ' ')
				p++;
			if (x > 100.05 && x < x1 - 0.05)
				inside++;
		}
		cr_expect_geq(inside, 30, "window %s: %zu points of the curve inside the first pass (0 .. %.1f)",
			      windows[w], inside, x1);
		free(svg);
		sim_result_release(&res);
		sim_scenario_release(&sc);
	}
}
