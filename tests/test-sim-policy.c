/* SPDX-License-Identifier: MIT */
/* The foreign rules precopy-sim plays as the VMM (sim/policy.c,
 * docs/policies.md): each decision function against hand-computed inputs,
 * then each rule driving the real engine on small scenarios to the outcome
 * its rule implies (QEMU never converges on a guest dirtying faster than the
 * link without auto-converge and does with it; Xen stops after 5 passes
 * whatever the downtime; Cloud Hypervisor cancels or ignores at its
 * timeout), no rule switching over before the switchover-ack, and the
 * command line (--compare's four rows, a bad --policy). */
#include <criterion/criterion.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/jsonv.h"
#include "precopy/engine.h"
#include "../sim/policy.h"
#include "../sim/simulator.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)
#define MS 1000000ull
#define S 1000000000ull

/* ---- the decision functions, by hand --------------------------------------- */

static struct sim_vmm vmm(int policy, uint32_t throttle_initial)
{
	struct sim_vmm v;
	struct sim_vmm_params p = {
		.policy = policy, .limit_ns = 300 * MS, .timeout_ns = 0, .timeout_action = PRECOPY_TIMEOUT_CANCEL,
		.throttle_initial = throttle_initial, .throttle_increment = 10, .throttle_max = 99, .page_size = 4096,
	};

	sim_vmm_init(&v, &p);
	return v;
}

static struct sim_vmm_decision ask(struct sim_vmm *v, int point, int pass_end, uint64_t now, uint64_t link,
				   uint64_t ram, uint64_t dirtied)
{
	struct sim_vmm_input in = {
		.point = point, .pass_end = pass_end, .ack_ok = 1, .now_ns = now, .link_bytes = link,
		.ram_pending = ram, .dirtied_bytes = dirtied,
	};
	struct sim_vmm_decision d;

	sim_vmm_decide(v, &in, &d);
	return d;
}

Test(sim_policy, names_round_trip_and_refuse_others)
{
	for (int p = 0; p < SIM_POLICY_COUNT; p++)
		cr_assert_eq(sim_policy_parse(sim_policy_name(p)), p);
	cr_assert_eq(sim_policy_parse("QEMU"), -1);
	cr_assert_eq(sim_policy_parse(""), -1);
	cr_assert_eq(sim_policy_parse(NULL), -1);
	cr_assert_null(sim_policy_name(SIM_POLICY_COUNT));
}

/* 100 ms windows at 1 GB/s: threshold = 1e9 B/s x 0.3 s = 300 MB. An
 * estimate of 299 MB asks for the sync; exact 301 MB does not switch, exact
 * 299 MB does. Before the first whole window the threshold is 0: nothing
 * is below it. */
Test(sim_policy, qemu_threshold_is_last_window_bandwidth_times_limit)
{
	struct sim_vmm v = vmm(SIM_POLICY_QEMU, 0);
	struct sim_vmm_decision d;

	d = ask(&v, SIM_VMM_WINDOW, 0, 50 * MS, 50000000, 1000, 0);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE, "no window measured yet: threshold 0");
	d = ask(&v, SIM_VMM_WINDOW, 0, 100 * MS, 100000000, 301000000, 0);
	cr_assert_eq(v.bw, 1000000000ull);
	cr_assert_eq(v.threshold, 300000000ull);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE);
	d = ask(&v, SIM_VMM_WINDOW, 0, 150 * MS, 150000000, 299000000, 0);
	cr_assert_eq(d.action, SIM_VMM_SYNC, "estimate under the threshold asks for the exact figure");
	d = ask(&v, SIM_VMM_SYNCED, 0, 150 * MS, 150000000, 301000000, 0);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE, "exact figure above: go on");
	d = ask(&v, SIM_VMM_SYNCED, 0, 160 * MS, 160000000, 299000000, 0);
	cr_assert_eq(d.action, SIM_VMM_SWITCHOVER);
	cr_assert_eq(d.expected_downtime_ns, 299 * MS);
	/* a slower window lowers the threshold: the window began at 100 ms
	 * (160 ms was too soon to close one): 100 MB in 200 ms, 150 MB */
	d = ask(&v, SIM_VMM_WINDOW, 0, 300 * MS, 200000000, 299000000, 0);
	cr_assert_eq(v.threshold, 150000000ull);
	cr_assert_eq(v.bw, 500000000ull, "bw %llu", (unsigned long long)v.bw);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE);
}

/* Auto-converge: a period counts once more than a second has passed since
 * the last one; dirtied > 50% of sent in a period counts; the second count
 * sets 20%, the fourth 30%; without auto-converge nothing throttles. */
Test(sim_policy, qemu_auto_converge_20_then_plus_10_every_second_count)
{
	struct sim_vmm on = vmm(SIM_POLICY_QEMU, 20), off = vmm(SIM_POLICY_QEMU, 0);
	uint64_t sent = 0;
	uint32_t seen[6];

	for (int i = 1; i <= 6; i++) {
		struct sim_vmm_decision d;

		sent += 1000000000ull; /* 1 GB per 1.1 s period */
		d = ask(&on, SIM_VMM_SYNCED, 1, (uint64_t)i * 1100 * MS, sent, 1ull << 40, 600000000ull);
		seen[i - 1] = d.throttle;
		d = ask(&off, SIM_VMM_SYNCED, 1, (uint64_t)i * 1100 * MS, sent, 1ull << 40, 600000000ull);
		cr_assert_eq(d.throttle, 0);
	}
	cr_assert_eq(seen[0], 0);
	cr_assert_eq(seen[1], 20);
	cr_assert_eq(seen[2], 20);
	cr_assert_eq(seen[3], 30);
	cr_assert_eq(seen[5], 40);
	/* dirtied exactly half of what was sent does not count */
	on = vmm(SIM_POLICY_QEMU, 20);
	for (int i = 1; i <= 4; i++)
		cr_assert_eq(ask(&on, SIM_VMM_SYNCED, 1, (uint64_t)i * 1100 * MS, (uint64_t)i * 1000000000ull, 1ull << 40,
				 500000000ull).throttle, 0);
}

/* The ceiling: 20, 30, ... 90, then 99, and 99 stays. */
Test(sim_policy, qemu_throttle_stops_at_the_maximum)
{
	struct sim_vmm v = vmm(SIM_POLICY_QEMU, 20);
	uint32_t t = 0;

	for (int i = 1; i <= 40; i++)
		t = ask(&v, SIM_VMM_SYNCED, 1, (uint64_t)i * 1100 * MS, (uint64_t)i * 1000000ull, 1ull << 40,
			1000000000ull).throttle;
	cr_assert_eq(t, 99);
}

/* CH: estimate = dirty bytes / (last pass's bytes / its time); the first
 * pass has no bandwidth before it; 0 dirty converges; the timeout cancels
 * or (force) switches over. */
Test(sim_policy, ch_memory_delta_over_last_pass_bandwidth)
{
	struct sim_vmm v = vmm(SIM_POLICY_CH, 0);
	struct sim_vmm_input in = {
		.point = SIM_VMM_SYNCED, .pass_end = 1, .ack_ok = 1, .now_ns = 10 * S, .ram_pending = 400000000,
		.pass_ram_bytes = 1000000000, .pass_ram_ns = 1 * S,
	};
	struct sim_vmm_decision d;

	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE);
	cr_assert_eq(d.expected_downtime_ns, 400 * MS);
	in.ram_pending = 300000000; /* 300 ms: within the limit (<=) */
	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_SWITCHOVER);
	in.ram_pending = 0;
	in.pass_ram_ns = 0; /* no transfer: the bandwidth stays */
	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_SWITCHOVER);
	/* a mid-pass point is not CH's: nothing decided */
	in.pass_end = 0;
	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE);
	/* timeout: default one hour when the scenario has none */
	in.pass_end = 1;
	in.ram_pending = 1ull << 40;
	in.now_ns = SIM_CH_DEFAULT_TIMEOUT_NS - 1;
	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE);
	in.now_ns = SIM_CH_DEFAULT_TIMEOUT_NS;
	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_CANCEL);
	v.p.timeout_action = PRECOPY_TIMEOUT_FORCE;
	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_FORCE);
	in.ack_ok = 0; /* never without the ack */
	sim_vmm_decide(&v, &in, &d);
	cr_assert_eq(d.action, SIM_VMM_CONTINUE);
	cr_assert(d.ack_held);
}

/* Xen: stop after the 5th pass whatever is dirty; < 50 dirty pages: one
 * more live pass with them, then stop; 0 dirty: stop at once. */
Test(sim_policy, xen_five_passes_or_under_fifty_pages)
{
	struct sim_vmm v = vmm(SIM_POLICY_XEN, 0);
	int i;

	for (i = 1; i < 5; i++)
		cr_assert_eq(ask(&v, SIM_VMM_SYNCED, 1, (uint64_t)i * S, 0, 1ull << 30, 0).action, SIM_VMM_CONTINUE,
			     "pass %d", i);
	cr_assert_eq(ask(&v, SIM_VMM_SYNCED, 1, 5 * S, 0, 1ull << 30, 0).action, SIM_VMM_SWITCHOVER);

	v = vmm(SIM_POLICY_XEN, 0);
	cr_assert_eq(ask(&v, SIM_VMM_SYNCED, 1, S, 0, 49 * 4096, 0).action, SIM_VMM_CONTINUE, "49 pages: sent live");
	cr_assert_eq(ask(&v, SIM_VMM_SYNCED, 1, 2 * S, 0, 10 * 4096, 0).action, SIM_VMM_SWITCHOVER);

	v = vmm(SIM_POLICY_XEN, 0);
	cr_assert_eq(ask(&v, SIM_VMM_SYNCED, 1, S, 0, 50 * 4096, 0).action, SIM_VMM_CONTINUE);
	cr_assert_eq(ask(&v, SIM_VMM_SYNCED, 1, 2 * S, 0, 0, 0).action, SIM_VMM_SWITCHOVER);
}

/* ---- the rules driving the engine ----------------------------------------- */

/* 1 GiB guest at 1 GiB/s of link, uniform writes: `rate` decides whether
 * the guest outruns the link. */
static struct sim_scenario small(int policy, uint64_t rate, uint32_t throttle_initial)
{
	struct sim_scenario sc;

	sim_scenario_init(&sc);
	snprintf(sc.source, sizeof(sc.source), "test");
	sc.memory = 1 * GiB;
	sc.bandwidth_Bps = 1 * GiB;
	sc.rate_Bps = rate;
	sc.model = SIM_MODEL_UNIFORM;
	sc.latency_ns = 0;
	sc.throttle_initial = throttle_initial;
	sc.timeout_ns = 60 * S;
	sc.downtime_limit_ns = 300 * MS;
	sc.policy = policy;
	return sc;
}

static void run_ok(const struct sim_scenario *sc, struct sim_result *r)
{
	int e = sim_run(sc, r, NULL, NULL);

	cr_assert_eq(e, 0, "sim_run: %d: %s", e, r->error);
	cr_assert_neq(r->outcome, SIM_FAILED, "run failed: %s", r->error);
	cr_assert_eq(r->policy, sc->policy);
}

Test(sim_policy, qemu_needs_auto_converge_above_the_bandwidth, .timeout = 120)
{
	struct sim_scenario sc = small(SIM_POLICY_QEMU, 2 * GiB, 0);
	struct sim_result r;

	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_CANCELLED, "without auto-converge: %s", sim_outcome_name(r.outcome));
	cr_assert_eq(r.max_throttle, 0);
	cr_assert_geq(r.total_ns, 60 * S);
	sim_result_release(&r);

	sc = small(SIM_POLICY_QEMU, 2 * GiB, 20);
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER, "with auto-converge: %s (%s)", sim_outcome_name(r.outcome), r.error);
	cr_assert_geq(r.max_throttle, 20);
	/* QEMU's threshold counts bytes only: the fixed costs come on top */
	cr_assert_leq(r.downtime_ns, r.downtime_limit_ns + sc.fixed_downtime_ns, "downtime %llu",
		      (unsigned long long)r.downtime_ns);
	sim_result_release(&r);
}

Test(sim_policy, qemu_switches_over_early_on_a_slow_guest)
{
	struct sim_scenario sc = small(SIM_POLICY_QEMU, 64 * MiB, 20);
	struct sim_result r;

	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	cr_assert_eq(r.max_throttle, 0, "no reason to throttle");
	cr_assert_lt(r.total_ns, 3 * S);
	sim_result_release(&r);
}

Test(sim_policy, xen_stops_after_five_passes_and_misses_the_limit, .timeout = 60)
{
	struct sim_scenario sc = small(SIM_POLICY_XEN, 2 * GiB, 20);
	struct sim_result r;

	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	cr_assert_eq(r.iterations, 5, "passes: %llu", (unsigned long long)r.iterations);
	cr_assert_gt(r.downtime_ns, r.downtime_limit_ns, "a guest above the link: the last pass is large");
	cr_assert_eq(r.max_throttle, 0, "Xen does not throttle");
	cr_assert(strstr(r.error, "5 live passes"), "%s", r.error);
	sim_result_release(&r);
}

Test(sim_policy, ch_cancels_or_ignores_at_its_timeout, .timeout = 120)
{
	struct sim_scenario sc = small(SIM_POLICY_CH, 2 * GiB, 20);
	struct sim_result r;

	sc.timeout_ns = 10 * S;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_CANCELLED);
	cr_assert_geq(r.total_ns, 10 * S);
	cr_assert_lt(r.total_ns, 13 * S, "decided at the first pass end after the timeout");
	cr_assert_eq(r.max_throttle, 0, "CH does not throttle");
	sim_result_release(&r);

	sc.timeout_action = PRECOPY_TIMEOUT_FORCE;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_FORCED);
	cr_assert_gt(r.downtime_ns, r.downtime_limit_ns);
	sim_result_release(&r);

	sc = small(SIM_POLICY_CH, 64 * MiB, 20);
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	cr_assert_leq(r.downtime_ns, r.downtime_limit_ns);
	sim_result_release(&r);
}

/* A device whose initial data the destination loads for 3 s: every rule
 * waits for the switchover-ack and says how long it held. */
Test(sim_policy, no_rule_switches_over_before_the_ack, .timeout = 60)
{
	for (int p = SIM_POLICY_QEMU; p < SIM_POLICY_COUNT; p++) {
		struct sim_scenario sc = small(p, 16 * MiB, 20);
		struct sim_result r;

		sim_device_init(&sc.devs[0], "dev0");
		sc.devs[0].initial_bytes = 64 * MiB;
		sc.devs[0].stop_copy_bytes = 4 * MiB;
		sc.devs[0].pre_copy = 1;
		sc.devs[0].dest_load_ns = 3 * S;
		sc.ndevs = 1;
		run_ok(&sc, &r);
		cr_assert_eq(r.outcome, SIM_SWITCHOVER, "%s: %s", sim_policy_name(p), sim_outcome_name(r.outcome));
		cr_assert_gt(r.ack_at_ns, 3 * S, "%s", sim_policy_name(p));
		cr_assert_geq(r.total_ns, r.ack_at_ns, "%s switched over before the ack", sim_policy_name(p));
		cr_assert_gt(r.ack_wait_ns, 0, "%s: the hold is reported", sim_policy_name(p));
		sim_result_release(&r);
	}
}

Test(sim_policy, the_scenario_key_and_its_error)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX];

	cr_assert_eq(sim_scenario_parse_string(&sc, "t.ini", "[migration]\npolicy = xen\n", err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(sc.policy, SIM_POLICY_XEN);
	sim_scenario_release(&sc);
	cr_assert_eq(sim_scenario_parse_string(&sc, "t.ini", "[migration]\npolicy = vmware\n", err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "t.ini:2") && strstr(err, "vmware") && strstr(err, "qemu"), "%s", err);
	sim_scenario_release(&sc);
}

/* ---- the command line -------------------------------------------------------- */

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

static int run(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	size_t got = 0;
	int st;

	cr_assert_not_null(p, "popen %s", cmd);
	while (got + 1 < len) {
		size_t r = fread(out + got, 1, len - 1 - got, p);

		if (!r)
			break;
		got += r;
	}
	out[got] = 0;
	st = pclose(p);
	cr_assert(WIFEXITED(st), "%s did not exit", cmd);
	return WEXITSTATUS(st);
}

static const char scenario[] = "[vm]\nmemory = 256M\n[workload]\nmodel = uniform\nrate = 32M/s\n"
			       "[link]\nbandwidth = 512M/s\nlatency = 0ms\n[migration]\ntimeout = 20s\n";

static void write_scenario(char *path, size_t len)
{
	FILE *f;

	snprintf(path, len, "/tmp/test-sim-policy-%d.ini", (int)getpid());
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(scenario, f);
	fclose(f);
}

Test(sim_policy, compare_prints_four_rows, .init = find_sim)
{
	static char out[1 << 16];
	char path[128], cmd[PATH_MAX + 256];
	const char *names[] = { "precopy ", "qemu ", "ch ", "xen " };
	int rows = 0;

	write_scenario(path, sizeof(path));
	snprintf(cmd, sizeof(cmd), "%s --compare %s", sim, path);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0, "%s", out);
	for (char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		for (int i = 0; i < 4; i++)
			if (!strncmp(l, names[i], strlen(names[i]))) {
				rows++;
				cr_assert(strstr(l, "switchover"), "a slow guest converges under every rule: %.120s", l);
			}
	}
	cr_assert_eq(rows, 4, "%s", out);
	snprintf(cmd, sizeof(cmd), "%s --compare --json %s", sim, path);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0);
	for (int i = 0; i < 4; i++) {
		char key[64];

		snprintf(key, sizeof(key), "{\"policy\":\"%.*s\"", (int)strlen(names[i]) - 1, names[i]);
		cr_assert(strstr(out, key), "no %s in %.300s", key, out);
	}
	cr_assert(strstr(out, "\"limit-met\":") && strstr(out, "\"bytes-sent\":") && strstr(out, "\"max-throttle\":"));
	{
		/* strict JSON, the schema's names for the figures it has */
		char err[256];
		struct jv *o = jv_parse(out, err, sizeof(err));
		const struct jv *rws;

		cr_assert_not_null(o, "%s: %s", err, out);
		cr_assert_eq(jv_get(o, "schema-version")->num, PRECOPY_STATS_JSON_SCHEMA);
		rws = jv_get(o, "compare");
		cr_assert_eq(rws->nkids, 4);
		for (size_t i = 0; i < rws->nkids; i++) {
			static const struct jv_field row[] = {
				{ "policy", 's' },   { "outcome", 's' },      { "iterations", 'i' }, { "total-time", 'n' },
				{ "downtime", 'N' }, { "limit-met", 'b' },     { "max-throttle", 'i' }, { "bytes-sent", 'i' },
				{ "ram", 'o' },      { "device", 'o' },        { "ack-wait", 'n' },   { "reason", 'S' },
			};

			cr_assert_eq(jv_check_fields(&rws->kids[i], row, sizeof(row) / sizeof(row[0]), 0, err, sizeof(err)), 0,
				     "row %zu: %s", i, err);
			cr_assert_eq(jv_get(&rws->kids[i], "bytes-sent")->num,
				     jv_get(jv_get(&rws->kids[i], "ram"), "transferred")->num +
					     jv_get(jv_get(&rws->kids[i], "device"), "transferred")->num);
		}
		jv_free(o);
	}
	unlink(path);
}

Test(sim_policy, bad_policy_is_exit_2_with_a_message, .init = find_sim)
{
	char out[4096], path[128], cmd[PATH_MAX + 256];

	write_scenario(path, sizeof(path));
	snprintf(cmd, sizeof(cmd), "%s --policy vmware %s 2>&1", sim, path);
	cr_assert_eq(run(cmd, out, sizeof(out)), 2);
	cr_assert(strstr(out, "--policy") && strstr(out, "vmware") && strstr(out, "precopy, qemu, ch or xen"), "%s", out);
	snprintf(cmd, sizeof(cmd), "%s --policy xen --json %s", sim, path);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0);
	cr_assert(strstr(out, "\"policy\":\"xen\""), "%s", out);
	snprintf(cmd, sizeof(cmd), "%s --compare --policy qemu %s 2>&1", sim, path);
	cr_assert_eq(run(cmd, out, sizeof(out)), 2);
	unlink(path);
}
