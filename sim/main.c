/* SPDX-License-Identifier: MIT */
/* precopy-sim: the pre-copy engine on a virtual clock over the fake kernel.
 * Options and output only; the run is sim/simulate.c. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "simulator.h"

enum {
	EXIT_SWITCHOVER = 0,
	EXIT_FAILED = 1,
	EXIT_BAD_SCENARIO = 2,
	EXIT_CANCELLED = 3,
	EXIT_FORCED = 4,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: precopy-sim [options] [SCENARIO.ini]\n"
		"\n"
		"Runs the real pre-copy engine (source and destination) over a fake kernel on a\n"
		"virtual clock and says whether the VM would migrate, how long it would take and\n"
		"what downtime it would see. Without SCENARIO, the built-in scenario runs\n"
		"(--print-default shows it; sim/scenarios/ holds more).\n"
		"\n"
		"options:\n"
		"  --json            one JSON object on stdout instead of the summary\n"
		"  --csv FILE        the per-iteration timeline as CSV\n"
		"  --svg FILE        a plot of pending bytes and expected downtime over time\n"
		"  --seed N          override [workload] seed\n"
		"  --policy NAME     who decides, overriding [migration] policy: precopy (the\n"
		"                    engine), qemu, ch (Cloud Hypervisor v52) or xen; the\n"
		"                    rules and their sources: docs/policies.md\n"
		"  --compare         run the scenario under all four policies and print one\n"
		"                    table (with --json: one object with a \"compare\" array);\n"
		"                    exit 0 unless a run failed (1)\n"
		"  --forecast        first measure the guest for 1.5 s (dirty logging on,\n"
		"                    nothing sent) and print the engine's forecast\n"
		"                    (precopy_forecast()), then run and print predicted vs\n"
		"                    simulated (outcome, total time, downtime, throttle)\n"
		"  --no-progress     no progress line (it is shown only on a terminal anyway)\n"
		"  --print-default   print the built-in scenario and exit\n"
		"  -h, --help        this text\n"
		"\n"
		"exit status:\n"
		"  0  switchover within the run (whether the simulated downtime met the\n"
		"     limit is in the summary and in the JSON's \"limit-met\")\n"
		"  1  the run failed (an engine or device error; the message says which),\n"
		"     or an output (stdout, --csv, --svg) could not be written\n"
		"  2  bad usage or bad scenario (the message names file, line and key), or\n"
		"     a --csv/--svg file cannot be opened for writing (checked before the run)\n"
		"  3  cancelled (the timeout with timeout_action=cancel)\n"
		"  4  forced switchover (the timeout with timeout_action=force: limit exceeded)\n"
		"\n");
	sim_scenario_keys_help(f);
	fprintf(f, "\nLimits and file rules: docs/sim-input.md. Examples: sim/scenarios/.\n");
}

static void progress(void *ctx, const struct sim_result *r, const struct sim_iter *it, uint64_t now_ns)
{
	sim_report_progress(ctx, r, it, now_ns);
}

/* An output file given on the command line, opened before the run so that
 * an unwritable path is a usage error (exit 2) found at once, not after
 * the whole run. */
struct output {
	const char *opt, *path;
	FILE *f;
};

static int open_output(struct output *o)
{
	if (!o->path)
		return 0;
	o->f = fopen(o->path, "w");
	if (!o->f) {
		fprintf(stderr, "precopy-sim: %s %s: cannot open for writing: %s\n", o->opt, o->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Close an output; a write error anywhere in it is reported here. */
static int close_output(FILE *f, const char *what, const char *path)
{
	int bad = ferror(f), e = 0;

	errno = 0;
	if (fflush(f) != 0 || bad)
		e = errno ? errno : EIO;
	if (fclose(f) != 0 && !e)
		e = errno ? errno : EIO;
	if (!e)
		return 0;
	fprintf(stderr, "precopy-sim: %s%s%s: write error: %s\n", what, path ? " " : "", path ? path : "", strerror(e));
	return -1;
}

static int csv_fn(FILE *f, const struct sim_scenario *sc, const struct sim_result *r)
{
	(void)sc;
	return sim_report_csv(f, r);
}

/* stdout, at the end of every path that wrote to it: 0 or EXIT_FAILED */
static int finish_stdout(int code)
{
	return close_output(stdout, "stdout", NULL) < 0 ? EXIT_FAILED : code;
}

/* --compare: the scenario under each policy, one table. */
static int run_compare(struct sim_scenario *sc, int json, int show_progress)
{
	struct sim_result res[SIM_POLICY_COUNT];
	int failed = 0, e;

	for (int p = 0; p < SIM_POLICY_COUNT; p++) {
		sc->policy = p;
		e = sim_run(sc, &res[p], show_progress ? progress : NULL, stderr);
		if (show_progress)
			fprintf(stderr, "\r%79s\r", "");
		if (e < 0 || res[p].outcome == SIM_FAILED) {
			fprintf(stderr, "precopy-sim: policy %s: %s\n", sim_policy_name(p),
				res[p].error[0] ? res[p].error : strerror(-e));
			if (e == -EINVAL) {
				for (int q = 0; q <= p; q++)
					sim_result_release(&res[q]);
				return EXIT_BAD_SCENARIO;
			}
			failed = 1;
		}
	}
	if (json)
		sim_report_compare_json(stdout, sc, res, SIM_POLICY_COUNT);
	else
		sim_report_compare(stdout, sc, res, SIM_POLICY_COUNT);
	for (int p = 0; p < SIM_POLICY_COUNT; p++)
		sim_result_release(&res[p]);
	return failed ? EXIT_FAILED : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },      { "csv", required_argument, NULL, 'c' },
		{ "svg", required_argument, NULL, 's' }, { "seed", required_argument, NULL, 'S' },
		{ "no-progress", no_argument, NULL, 'P' }, { "print-default", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },      { "policy", required_argument, NULL, 'p' },
		{ "compare", no_argument, NULL, 'C' },   { "forecast", no_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	struct output csv = { "--csv", NULL, NULL }, svg = { "--svg", NULL, NULL };
	const char *seed = NULL, *policy = NULL;
	int json = 0, show_progress = 1, output_failed = 0, compare = 0, forecast = 0, c, e, code;
	struct precopy_forecast fc;
	struct precopy_forecast_sample fs[SIM_FORECAST_SAMPLES];
	struct sim_scenario sc;
	struct sim_result res;
	char err[SIM_ERR_MAX];

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'c': csv.path = optarg; break;
		case 's': svg.path = optarg; break;
		case 'S': seed = optarg; break;
		case 'p': policy = optarg; break;
		case 'C': compare = 1; break;
		case 'F': forecast = 1; break;
		case 'P': show_progress = 0; break;
		case 'D': fputs(sim_default_scenario, stdout); return finish_stdout(0);
		case 'h': usage(stdout); return finish_stdout(0);
		default: usage(stderr); return EXIT_BAD_SCENARIO;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return EXIT_BAD_SCENARIO;
	}
	if (optind < argc)
		e = sim_scenario_load(&sc, argv[optind], err, sizeof(err));
	else
		e = sim_scenario_parse_string(&sc, "built-in", sim_default_scenario, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "precopy-sim: %s\n", err);
		sim_scenario_release(&sc);
		return EXIT_BAD_SCENARIO;
	}
	/* the file's rule for [workload] seed, not a second one */
	if (seed && sim_scenario_set(&sc, "--seed", "workload", "seed", seed, err, sizeof(err)) < 0) {
		fprintf(stderr, "precopy-sim: %s\n", err);
		sim_scenario_release(&sc);
		return EXIT_BAD_SCENARIO;
	}
	if (policy && sim_scenario_set(&sc, "--policy", "migration", "policy", policy, err, sizeof(err)) < 0) {
		fprintf(stderr, "precopy-sim: %s\n", err);
		sim_scenario_release(&sc);
		return EXIT_BAD_SCENARIO;
	}
	if (compare) {
		if (csv.path || svg.path || policy || forecast) {
			fprintf(stderr, "precopy-sim: --compare runs every policy and writes one table: not with %s\n",
				forecast ? "--forecast" : policy ? "--policy" : csv.path ? "--csv" : "--svg");
			sim_scenario_release(&sc);
			return EXIT_BAD_SCENARIO;
		}
		code = run_compare(&sc, json, show_progress && isatty(STDERR_FILENO));
		sim_scenario_release(&sc);
		return finish_stdout(code);
	}
	if (forecast) {
		if (json || (policy && sc.policy != SIM_POLICY_PRECOPY)) {
			fprintf(stderr, "precopy-sim: --forecast forecasts the engine's own policy, in text: not with %s\n",
				json ? "--json" : "--policy");
			sim_scenario_release(&sc);
			return EXIT_BAD_SCENARIO;
		}
		sc.policy = SIM_POLICY_PRECOPY;
		e = sim_forecast(&sc, &fc, fs);
		if (e < 0) {
			fprintf(stderr, "precopy-sim: forecast: %s\n", strerror(-e));
			sim_scenario_release(&sc);
			return EXIT_FAILED;
		}
		sim_report_forecast(stdout, &sc, &fc, fs, NULL);
		fflush(stdout);
	}
	if (open_output(&csv) < 0 || open_output(&svg) < 0) {
		if (csv.f)
			fclose(csv.f);
		sim_scenario_release(&sc);
		return EXIT_BAD_SCENARIO;
	}
	show_progress = show_progress && isatty(STDERR_FILENO);
	e = sim_run(&sc, &res, show_progress ? progress : NULL, stderr);
	if (show_progress)
		fprintf(stderr, "\r%79s\r", "");
	if (e < 0) {
		fprintf(stderr, "precopy-sim: %s\n", res.error[0] ? res.error : strerror(-e));
		sim_result_release(&res);
		sim_scenario_release(&sc);
		if (csv.f)
			fclose(csv.f);
		if (svg.f)
			fclose(svg.f);
		return e == -EINVAL ? EXIT_BAD_SCENARIO : EXIT_FAILED;
	}
	if (json)
		sim_report_json(stdout, &sc, &res);
	else
		sim_report_summary(stdout, &sc, &res);
	if (csv.f) {
		csv_fn(csv.f, &sc, &res);
		if (close_output(csv.f, csv.opt, csv.path) < 0)
			output_failed = 1;
	}
	if (svg.f) {
		sim_report_svg(svg.f, &sc, &res);
		if (close_output(svg.f, svg.opt, svg.path) < 0)
			output_failed = 1;
	}
	if (!json)
		fprintf(stdout, "  (simulated in %.2f s of real time)\n", res.wall_s);
	if (forecast && res.outcome != SIM_FAILED)
		sim_report_forecast(stdout, &sc, &fc, fs, &res);
	switch (res.outcome) {
	case SIM_SWITCHOVER: code = EXIT_SWITCHOVER; break;
	case SIM_CANCELLED: code = EXIT_CANCELLED; break;
	case SIM_FORCED: code = EXIT_FORCED; break;
	default:
		code = EXIT_FAILED;
		if (res.error[0])
			fprintf(stderr, "precopy-sim: %s\n", res.error);
	}
	sim_result_release(&res);
	sim_scenario_release(&sc);
	code = finish_stdout(code);
	return output_failed ? EXIT_FAILED : code;
}
