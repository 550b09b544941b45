/* SPDX-License-Identifier: MIT */
/* precopy-sim's outputs: one JSON object, a human summary, the per-iteration
 * timeline as CSV, an SVG plot an operator can read at a glance, and the
 * one-line progress display. Everything here is a pure function of the
 * scenario and the result (the JSON has no wall-clock figure), so a run is
 * reproducible byte for byte. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "precopy/engine.h"
#include "simulator.h"
#include "../tools/json.h"

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* "1.50 GiB" */
static const char *human(char *buf, size_t len, double bytes)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;

	while (bytes >= 1024.0 && i < 5) {
		bytes /= 1024.0;
		i++;
	}
	snprintf(buf, len, i ? "%.2f %s" : "%.0f %s", bytes, u[i]);
	return buf;
}

static const char *human_time(char *buf, size_t len, uint64_t ns)
{
	if (ns >= 10000000000ull)
		snprintf(buf, len, "%.1f s", (double)ns / 1e9);
	else if (ns >= 1000000000ull)
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
	else
		snprintf(buf, len, "%.1f ms", ms(ns));
	return buf;
}

static const char *action_name(uint32_t a)
{
	return precopy_action_name(a);
}

static void json_ms_or_null(FILE *f, const char *key, uint64_t ns, int null_if)
{
	if (null_if || ns == PRECOPY_UNBOUNDED)
		fprintf(f, "\"%s\":null", key);
	else
		fprintf(f, "\"%s\":%.3f", key, ms(ns));
}

/* One escaper for every tool: tools/json.h (invalid UTF-8 becomes U+FFFD). */
static void json_str(FILE *f, const char *s)
{
	tool_json_str(f, s);
}

int sim_report_json(FILE *f, const struct sim_scenario *sc, const struct sim_result *r)
{
	int switched = r->outcome == SIM_SWITCHOVER || r->outcome == SIM_FORCED;
	const char *ej = r->engine_json;
	size_t ejn = ej ? strlen(ej) : 0;
	char blocked[160];

	/* the library's object (one schema, docs/stats-json.md) without its
	 * closing brace, then the simulator's own fields */
	if (ejn < 2 || ej[0] != '{' || ej[ejn - 1] != '}')
		return -EINVAL; /* sim_run() always leaves one when it returned 0 */
	fwrite(ej, 1, ejn - 1, f);
	fprintf(f, ",\"scenario\":");
	json_str(f, sc->source);
	fprintf(f, ",\"policy\":\"%s\",\"outcome\":\"%s\",\"limit-met\":%s,\"ack-wait\":%.3f,",
		sim_policy_name(r->policy) ? sim_policy_name(r->policy) : "?", sim_outcome_name(r->outcome),
		switched && r->downtime_ns <= r->downtime_limit_ns ? "true" : "false", ms(r->ack_wait_ns));
	json_ms_or_null(f, "ack-at", r->ack_at_ns, !r->ack_at_ns);
	fprintf(f, ",\"max-throttle\":%u,", r->max_throttle);
	json_ms_or_null(f, "first-stall", (uint64_t)r->stalled_at_ns, r->stalled_at_ns < 0);
	fprintf(f, ",\"reason\":");
	json_str(f, r->error[0] ? r->error : NULL);
	fprintf(f, ",\"downtime-breakdown\":{\"switchover\":%.3f,\"final-ram\":%.3f,\"dest-load\":%.3f,"
		   "\"fixed\":%.3f,\"dest-resume\":%.3f},\"final-ram-bytes\":%llu,",
		ms(r->dt_switchover_ns), ms(r->dt_final_ram_ns), ms(r->dt_dest_load_ns), ms(r->dt_fixed_ns),
		ms(r->dt_dest_resume_ns), (unsigned long long)r->final_ram_bytes);
	fprintf(f, "\"iterations-detail\":[");
	for (size_t i = 0; i < r->niters; i++) {
		const struct sim_iter *it = &r->iters[i];
		uint64_t sent = it->ram_bytes + it->device_bytes;

		fprintf(f, "%s{\"iteration\":%llu,\"t\":%.3f,\"dirty-pages\":%llu,\"page-writes\":%llu,\"bytes-sent\":%llu,"
			   "\"ram-bytes\":%llu,\"device-bytes\":%llu,\"bandwidth\":%llu,\"pending-bytes\":%llu,",
			i ? "," : "", (unsigned long long)it->iteration, ms(it->t_ns), (unsigned long long)it->dirty_pages,
			(unsigned long long)it->page_writes, (unsigned long long)sent, (unsigned long long)it->ram_bytes,
			(unsigned long long)it->device_bytes, (unsigned long long)it->bandwidth_Bps,
			(unsigned long long)it->pending_bytes);
		json_ms_or_null(f, "expected-downtime", it->expected_downtime_ns, 0);
		if (isfinite(it->rho))
			fprintf(f, ",\"rho\":%.6f", it->rho);
		else
			fprintf(f, ",\"rho\":null");
		precopy_blocked_json(it->blocked, blocked, sizeof(blocked));
		fprintf(f, ",\"throttle\":%u,\"action\":\"%s\",\"blocked-reasons\":%s,\"stalled\":%s}", it->throttle,
			action_name(it->action), blocked, it->stalled ? "true" : "false");
	}
	fprintf(f, "]}\n");
	return ferror(f) ? -EIO : 0;
}

int sim_report_summary(FILE *f, const struct sim_scenario *sc, const struct sim_result *r)
{
	char a[64], b[64], c[64];
	int switched = r->outcome == SIM_SWITCHOVER || r->outcome == SIM_FORCED;

	fprintf(f, "precopy-sim: %s (%s of RAM, %u device%s, link %.2f Gbit/s)\n", sc->source,
		human(a, sizeof(a), (double)sc->memory), sc->ndevs, sc->ndevs == 1 ? "" : "s",
		(double)sc->bandwidth_Bps * 8 / 1e9);
	if (r->policy != SIM_POLICY_PRECOPY)
		fprintf(f, "  policy       %s (its rule decides; docs/policies.md)\n", sim_policy_name(r->policy));
	fprintf(f, "  outcome      %s", sim_outcome_name(r->outcome));
	if (r->outcome == SIM_SWITCHOVER && r->policy != SIM_POLICY_PRECOPY)
		fprintf(f, " (%s; downtime limit %s)\n", r->error, r->downtime_ns <= r->downtime_limit_ns ? "met" : "exceeded");
	else if (r->outcome == SIM_SWITCHOVER)
		fprintf(f, r->downtime_ns <= r->downtime_limit_ns ? " (downtime limit met)\n"
								 : " (the engine expected to meet the limit; the downtime exceeded it)\n");
	else if (r->error[0])
		fprintf(f, " (%s)\n", r->error);
	else
		fprintf(f, "\n");
	fprintf(f, "  total time   %s (virtual), %llu iteration%s\n", human_time(a, sizeof(a), r->total_ns),
		(unsigned long long)r->iterations, r->iterations == 1 ? "" : "s");
	if (switched) {
		fprintf(f, "  downtime     %s, limit %s, engine expected %s%s\n", human_time(a, sizeof(a), r->downtime_ns),
			human_time(b, sizeof(b), r->downtime_limit_ns),
			r->expected_downtime_ns == PRECOPY_UNBOUNDED ? "unbounded" : human_time(c, sizeof(c), r->expected_downtime_ns),
			r->downtime_ns > r->downtime_limit_ns ? "  ** LIMIT EXCEEDED **" : "");
		fprintf(f, "               = switchover %.1f ms + final RAM %.1f ms + dest load %.1f ms + fixed %.1f ms + resume %.1f ms\n",
			ms(r->dt_switchover_ns), ms(r->dt_final_ram_ns), ms(r->dt_dest_load_ns), ms(r->dt_fixed_ns),
			ms(r->dt_dest_resume_ns));
	} else {
		fprintf(f, "  downtime     none (no switchover), limit %s, engine expected %s\n",
			human_time(b, sizeof(b), r->downtime_limit_ns),
			r->expected_downtime_ns == PRECOPY_UNBOUNDED ? "unbounded" : human_time(c, sizeof(c), r->expected_downtime_ns));
	}
	fprintf(f, "  sent         RAM %s, device state %s\n", human(a, sizeof(a), (double)r->ram_bytes),
		human(b, sizeof(b), (double)r->device_bytes));
	if (r->ack_at_ns)
		fprintf(f, "  ack wait     %s (switchover-ack reached the source at %s)\n", human_time(a, sizeof(a), r->ack_wait_ns),
			human_time(b, sizeof(b), r->ack_at_ns));
	else
		fprintf(f, "  ack wait     %s (no switchover-ack%s)\n", human_time(a, sizeof(a), r->ack_wait_ns),
			sc->ndevs ? " received" : " needed");
	fprintf(f, "  throttle     max %u%%\n", r->max_throttle);
	if (r->stalled_at_ns >= 0)
		fprintf(f, "  stall        the engine reported the limit unreachable at current rates at %s\n",
			human_time(a, sizeof(a), (uint64_t)r->stalled_at_ns));
	else
		fprintf(f, "  stall        none reported\n");
	return ferror(f) ? -EIO : 0;
}

int sim_report_csv(FILE *f, const struct sim_result *r)
{
	fprintf(f, "iteration,t_ms,dirty_pages,page_writes,ram_bytes,device_bytes,bytes_sent,bandwidth_Bps,pending_bytes,"
		   "expected_downtime_ms,rho,throttle,action,stalled\n");
	for (size_t i = 0; i < r->niters; i++) {
		const struct sim_iter *it = &r->iters[i];

		fprintf(f, "%llu,%.3f,%llu,%llu,%llu,%llu,%llu,%llu,%llu,", (unsigned long long)it->iteration, ms(it->t_ns),
			(unsigned long long)it->dirty_pages, (unsigned long long)it->page_writes,
			(unsigned long long)it->ram_bytes, (unsigned long long)it->device_bytes,
			(unsigned long long)(it->ram_bytes + it->device_bytes), (unsigned long long)it->bandwidth_Bps,
			(unsigned long long)it->pending_bytes);
		if (it->expected_downtime_ns == PRECOPY_UNBOUNDED)
			fprintf(f, ",");
		else
			fprintf(f, "%.3f,", ms(it->expected_downtime_ns));
		if (isfinite(it->rho))
			fprintf(f, "%.6f,", it->rho);
		else
			fprintf(f, ",");
		fprintf(f, "%u,%s,%d\n", it->throttle, action_name(it->action), it->stalled);
	}
	return ferror(f) ? -EIO : 0;
}

/* ---- SVG ---------------------------------------------------------------- */

/* Two panels over one time axis: the bytes still pending (top, binary
 * units on a log axis: GiB as the text says GiB), and the expected
 * downtime against the limit (bottom, its own log axis in ms), so the
 * limit line is never read on the bytes axis. Throttled and waiting-for-
 * the-ACK stretches are shaded in both; pending bytes are drawn through
 * the samples the run took inside its passes (struct sim_sample), so the
 * first pass, where no decision falls, is a curve, not a straight line. */
#define W 1000.0
#define H 680.0
#define PL 100.0 /* plot left */
#define PR 900.0 /* plot right */
#define T1 78.0  /* top panel: bytes pending */
#define B1 318.0
#define T2 352.0 /* bottom panel: expected downtime */
#define B2 592.0

struct logaxis {
	double lo, hi;     /* log of the ends, in the axis' base */
	double base, step; /* base 2 (bytes) or 10 (ms); ticks every `step` exponents */
	double top, bottom;
};

static double ly(const struct logaxis *a, double v)
{
	double l = v > 0 ? log(v) / log(a->base) : a->lo;

	if (l < a->lo)
		l = a->lo;
	if (l > a->hi)
		l = a->hi;
	return a->bottom - (l - a->lo) / (a->hi - a->lo) * (a->bottom - a->top);
}

static void axis_fit(struct logaxis *a, double mn, double mx, double base, double step, double top, double bottom)
{
	if (!(mn > 0))
		mn = 1;
	if (mx < mn)
		mx = mn;
	a->base = base;
	a->step = step;
	a->top = top;
	a->bottom = bottom;
	a->lo = floor(log(mn) / log(base) / step) * step;
	a->hi = ceil(log(mx) / log(base) / step) * step;
	if (a->hi - a->lo < 2 * step)
		a->hi = a->lo + 2 * step;
}

static const char *bytes_tick(char *buf, size_t len, double e2)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int e = (int)e2, k = e / 10;

	if (k > 5)
		k = 5;
	snprintf(buf, len, "%.0f %s", ldexp(1.0, e - 10 * k), u[k]);
	return buf;
}

static const char *ms_tick(char *buf, size_t len, double e10)
{
	double v = pow(10, e10);

	if (v >= 1000)
		snprintf(buf, len, "%.0f s", v / 1000);
	else if (v >= 1)
		snprintf(buf, len, "%.0f ms", v);
	else
		snprintf(buf, len, "%g ms", v);
	return buf;
}

static double nice_step(double span)
{
	double raw = span / 8, p = pow(10, floor(log10(raw))), m = raw / p;

	return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void svg_text_escaped(FILE *f, const char *s)
{
	for (; *s; s++)
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
}

/* Shade [t0, t1) in both panels. */
static void svg_band(FILE *f, double x0, double x1, const char *color)
{
	if (x1 - x0 < 1)
		x1 = x0 + 1;
	fprintf(f, "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\" fill-opacity=\"0.18\"/>\n", x0,
		T1, x1 - x0, B1 - T1, color);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\" fill-opacity=\"0.18\"/>\n", x0,
		T2, x1 - x0, B2 - T2, color);
}

int sim_report_svg(FILE *f, const struct sim_scenario *sc, const struct sim_result *r)
{
	struct logaxis pa, da;
	double tmax = ms(r->total_ns) / 1000.0, pmin = INFINITY, pmax = 0, dmin = INFINITY, dmax = 0, step;
	double limit_ms = ms(r->downtime_limit_ns), start_pending;
	int switched = r->outcome == SIM_SWITCHOVER || r->outcome == SIM_FORCED;
	double tsw = switched ? ms(r->total_ns - r->downtime_ns) / 1000.0 : tmax;
	char a[64], b[64], c[64];

	if (tmax <= 0)
		tmax = 1e-3;
	/* at the start everything is pending: all RAM and every device's state */
	start_pending = (double)sc->memory;
	for (uint32_t i = 0; i < sc->ndevs; i++)
		start_pending += (double)sc->devs[i].stop_copy_bytes +
				 (sc->devs[i].pre_copy ? (double)sc->devs[i].initial_bytes : 0.0);
	pmin = pmax = start_pending;
	for (size_t i = 0; i < r->niters; i++) {
		const struct sim_iter *it = &r->iters[i];
		if (it->pending_bytes && it->pending_bytes != PRECOPY_UNBOUNDED) {
			pmin = fmin(pmin, (double)it->pending_bytes);
			pmax = fmax(pmax, (double)it->pending_bytes);
		}
		if (it->expected_downtime_ns != PRECOPY_UNBOUNDED && it->expected_downtime_ns) {
			dmin = fmin(dmin, ms(it->expected_downtime_ns));
			dmax = fmax(dmax, ms(it->expected_downtime_ns));
		}
	}
	for (size_t i = 0; i < r->nsamples; i++)
		if (r->samples[i].pending_bytes) {
			pmin = fmin(pmin, (double)r->samples[i].pending_bytes);
			pmax = fmax(pmax, (double)r->samples[i].pending_bytes);
		}
	if (switched) {
		dmin = fmin(dmin, ms(r->downtime_ns));
		dmax = fmax(dmax, ms(r->downtime_ns));
	}
	dmin = fmin(dmin, limit_ms);
	dmax = fmax(dmax, limit_ms);
	axis_fit(&pa, pmin, pmax, 2, 5, T1, B1);
	axis_fit(&da, dmin, dmax, 10, 1, T2, B2);
#define X(t) (PL + (t) / tmax * (PR - PL))
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
		   "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n", W, H, W, H);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(f, "<text x=\"%.0f\" y=\"26\" font-size=\"17\" font-weight=\"bold\">precopy-sim: ", PL);
	svg_text_escaped(f, sc->source);
	fprintf(f, " — %s after %llu iterations, %s</text>\n", sim_outcome_name(r->outcome),
		(unsigned long long)r->iterations, human_time(a, sizeof(a), r->total_ns));
	if (switched)
		fprintf(f, "<text x=\"%.0f\" y=\"48\" fill=\"%s\">downtime %s (limit %s, engine expected %s)%s</text>\n", PL,
			r->downtime_ns > r->downtime_limit_ns ? "#c00000" : "#006000", human_time(a, sizeof(a), r->downtime_ns),
			human_time(b, sizeof(b), r->downtime_limit_ns),
			r->expected_downtime_ns == PRECOPY_UNBOUNDED ? "unbounded" : human_time(c, sizeof(c), r->expected_downtime_ns),
			r->downtime_ns > r->downtime_limit_ns ? " — limit exceeded" : " — limit met");
	else {
		fprintf(f, "<text x=\"%.0f\" y=\"48\" fill=\"#c00000\">no switchover: ", PL);
		svg_text_escaped(f, r->error[0] ? r->error : sim_outcome_name(r->outcome));
		fputs("</text>\n", f);
	}
	/* throttled and waiting-for-the-ACK stretches, behind everything: a
	 * decision holds until the next one */
	for (size_t i = 0; i < r->niters; i++) {
		const struct sim_iter *it = &r->iters[i];
		double t = ms(it->t_ns) / 1000, next = i + 1 < r->niters ? ms(r->iters[i + 1].t_ns) / 1000 : tsw;

		if (it->throttle)
			svg_band(f, X(t), X(next), "#8b008b");
		if (it->action == PRECOPY_WAIT_ACK)
			svg_band(f, X(t), X(next), "#008000");
	}
	/* the panels, their axes and grids */
	fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n", PL, T1,
		PR - PL, B1 - T1);
	fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n", PL, T2,
		PR - PL, B2 - T2);
	for (double e = pa.lo; e <= pa.hi + 1e-9; e += pa.step) {
		double y = ly(&pa, ldexp(1.0, (int)e));
		fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", PL, PR, y, y);
		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#1f5fbf\">%s</text>\n", PL - 6, y + 4,
			bytes_tick(a, sizeof(a), e));
	}
	for (double e = da.lo; e <= da.hi + 1e-9; e += da.step) {
		double y = ly(&da, pow(10, e));
		fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", PL, PR, y, y);
		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#d2691e\">%s</text>\n", PL - 6, y + 4,
			ms_tick(a, sizeof(a), e));
	}
	step = nice_step(tmax);
	for (double t = 0; t <= tmax + 1e-9; t += step) {
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#eeeeee\"/>\n", X(t), X(t), T1, B1);
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#eeeeee\"/>\n", X(t), X(t), T2, B2);
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n", X(t), B2 + 18, t);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">virtual time (s)</text>\n", (PL + PR) / 2, B2 + 38);
	fprintf(f, "<text transform=\"translate(22 %.0f) rotate(-90)\" text-anchor=\"middle\" fill=\"#1f5fbf\">pending "
		   "(RAM + device)</text>\n", (T1 + B1) / 2);
	fprintf(f, "<text transform=\"translate(22 %.0f) rotate(-90)\" text-anchor=\"middle\" fill=\"#d2691e\">expected "
		   "downtime</text>\n", (T2 + B2) / 2);
	/* the limit, in the downtime panel, labelled above its line */
	{
		double y = ly(&da, limit_ms);
		fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#c00000\" stroke-width=\"2\" "
			   "stroke-dasharray=\"8 5\"/>\n", PL, PR, y, y);
		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#c00000\" font-weight=\"bold\" "
			   "stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">downtime limit %s</text>\n", PR - 6, y - 6,
			human_time(a, sizeof(a), r->downtime_limit_ns));
	}
	if (r->stalled_at_ns >= 0) {
		double x = X((double)r->stalled_at_ns / 1e9);
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#8b008b\" stroke-dasharray=\"3 3\"/>\n",
			x, x, T2, B2);
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"end\" fill=\"#8b008b\">stall reported at %s</text>\n",
			x - 4, T2 + 16, human_time(a, sizeof(a), (uint64_t)r->stalled_at_ns));
	}
	if (r->ack_at_ns) {
		double x = X((double)r->ack_at_ns / 1e9);
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#008000\" stroke-dasharray=\"4 3\"/>\n",
			x, x, T1, B1);
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"end\" fill=\"#008000\">switchover-ack at %s</text>\n",
			x - 4, B1 - 8, human_time(a, sizeof(a), r->ack_at_ns));
	}
	if (switched) {
		double x0 = X(tsw), x1 = X(tmax);
		if (x1 - x0 < 3)
			x0 = x1 - 3;
		fprintf(f, "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"#c00000\" fill-opacity=\"0.25\"/>\n",
			x0, T2, x1 - x0, B2 - T2);
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"end\" fill=\"#c00000\" font-weight=\"bold\">switchover at %s"
			   " → downtime %s</text>\n", x0 - 4, B2 - 10, human_time(a, sizeof(a), r->total_ns - r->downtime_ns),
			human_time(b, sizeof(b), r->downtime_ns));
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#c00000\"/>\n", x1, ly(&da, ms(r->downtime_ns)));
	}
	/* pending bytes, from everything at t = 0 through the samples taken
	 * inside every pass (the first one included) and at each decision;
	 * a run without samples (built in code) through the decisions only.
	 * Points closer than half a pixel to the last one drawn are skipped
	 * (a 600 s run has 6000 samples) unless they are decisions. */
	fprintf(f, "<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\" points=\"%.1f,%.1f ", X(0.0),
		ly(&pa, start_pending));
	if (r->nsamples) {
		double lastx = X(0.0);
		size_t k = 0;

		for (size_t i = 0; i < r->nsamples; i++) {
			const struct sim_sample *sm = &r->samples[i];
			double x = X(ms(sm->t_ns) / 1000);
			int decision = 0;

			while (k < r->niters && r->iters[k].t_ns < sm->t_ns)
				k++;
			decision = k < r->niters && r->iters[k].t_ns == sm->t_ns;
			if (!sm->pending_bytes || (!decision && x - lastx < 0.5))
				continue;
			fprintf(f, "%.1f,%.1f ", x, ly(&pa, (double)sm->pending_bytes));
			lastx = x;
		}
	} else {
		for (size_t i = 0; i < r->niters; i++) {
			const struct sim_iter *it = &r->iters[i];
			if (it->pending_bytes && it->pending_bytes != PRECOPY_UNBOUNDED)
				fprintf(f, "%.1f,%.1f ", X(ms(it->t_ns) / 1000), ly(&pa, (double)it->pending_bytes));
		}
	}
	fprintf(f, "\"/>\n");
	for (size_t i = 0; i < r->niters && r->niters <= 200; i++) {
		const struct sim_iter *it = &r->iters[i];
		if (it->pending_bytes && it->pending_bytes != PRECOPY_UNBOUNDED)
			fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#1f5fbf\"/>\n", X(ms(it->t_ns) / 1000),
				ly(&pa, (double)it->pending_bytes));
	}
	fprintf(f, "<polyline fill=\"none\" stroke=\"#d2691e\" stroke-width=\"2\" points=\"");
	for (size_t i = 0; i < r->niters; i++) {
		const struct sim_iter *it = &r->iters[i];
		if (it->expected_downtime_ns != PRECOPY_UNBOUNDED && it->expected_downtime_ns)
			fprintf(f, "%.1f,%.1f ", X(ms(it->t_ns) / 1000), ly(&da, ms(it->expected_downtime_ns)));
	}
	fprintf(f, "\"/>\n");
	/* legend */
	fprintf(f, "<g transform=\"translate(%.0f %.0f)\">\n", PL, H - 30);
	fprintf(f, "<line x1=\"0\" x2=\"24\" y1=\"0\" y2=\"0\" stroke=\"#1f5fbf\" stroke-width=\"2\"/><text x=\"30\" y=\"4\">"
		   "pending (top)</text>\n");
	fprintf(f, "<line x1=\"140\" x2=\"164\" y1=\"0\" y2=\"0\" stroke=\"#d2691e\" stroke-width=\"2\"/><text x=\"170\" "
		   "y=\"4\">expected downtime (bottom)</text>\n");
	fprintf(f, "<rect x=\"370\" y=\"-7\" width=\"20\" height=\"14\" fill=\"#8b008b\" fill-opacity=\"0.18\"/><text "
		   "x=\"396\" y=\"4\">throttled</text>\n");
	fprintf(f, "<rect x=\"470\" y=\"-7\" width=\"20\" height=\"14\" fill=\"#008000\" fill-opacity=\"0.18\"/><text "
		   "x=\"496\" y=\"4\">waiting for the ACK</text>\n");
	fprintf(f, "<rect x=\"640\" y=\"-7\" width=\"20\" height=\"14\" fill=\"#c00000\" fill-opacity=\"0.25\"/><text "
		   "x=\"666\" y=\"4\">downtime (dot: simulated)</text>\n");
	fprintf(f, "</g>\n</svg>\n");
#undef X
	return ferror(f) ? -EIO : 0;
}

void sim_report_progress(FILE *f, const struct sim_result *r, const struct sim_iter *it, uint64_t now_ns)
{
	char line[160], pend[32], exp[32], phase[40];
	uint64_t ram = 0;

	/* the phase: the first pass (RAM sent so far against all of it), then
	 * iterating, held for the switchover-ack, or the switchover decided */
	for (size_t i = 0; i < r->niters; i++)
		ram += r->iters[i].ram_bytes;
	if (it->action == PRECOPY_SWITCHOVER || it->action == PRECOPY_FORCE_SWITCHOVER)
		snprintf(phase, sizeof(phase), "switchover");
	else if (it->action == PRECOPY_WAIT_ACK)
		snprintf(phase, sizeof(phase), "waiting for switchover-ack");
	else if (r->memory && ram < r->memory)
		snprintf(phase, sizeof(phase), "first pass %3.0f%%",
			 fmin(100.0, 100.0 * (double)ram / (double)r->memory));
	else
		snprintf(phase, sizeof(phase), "iterating");
	if (it->expected_downtime_ns == PRECOPY_UNBOUNDED)
		snprintf(exp, sizeof(exp), "unbounded");
	else
		human_time(exp, sizeof(exp), it->expected_downtime_ns);
	human(pend, sizeof(pend), (double)it->pending_bytes);
	/* at most 79 columns, so an 80-column terminal never wraps it */
	snprintf(line, sizeof(line), "%7.2fs #%-5llu %-26s pend %-10s exp %-9s thr %2u%%", (double)now_ns / 1e9,
		 (unsigned long long)it->iteration, phase, pend, exp, it->throttle);
	line[79] = 0; /* at most 79 columns */
	fprintf(f, "\r%-79s", line);
	fflush(f);
}

/* ---- --compare ----------------------------------------------------------- */

static int switched(const struct sim_result *r)
{
	return r->outcome == SIM_SWITCHOVER || r->outcome == SIM_FORCED;
}

int sim_report_compare(FILE *f, const struct sim_scenario *sc, const struct sim_result *r, size_t n)
{
	char a[64], b[64], c[64], d[64], e[64];

	fprintf(f, "precopy-sim --compare: %s (%s of RAM, %u device%s, link %.2f Gbit/s, limit %s)\n", sc->source,
		human(a, sizeof(a), (double)sc->memory), sc->ndevs, sc->ndevs == 1 ? "" : "s",
		(double)sc->bandwidth_Bps * 8 / 1e9, human_time(b, sizeof(b), sc->downtime_limit_ns));
	fprintf(f, "%-8s %-10s %10s %10s %-5s %8s %11s %9s  %s\n", "policy", "outcome", "total", "downtime", "limit",
		"throttle", "sent", "ack wait", "why it ended");
	for (size_t i = 0; i < n; i++) {
		const struct sim_result *x = &r[i];
		const char *why = x->error;

		if (!why[0] && x->outcome == SIM_SWITCHOVER)
			why = "expected downtime within the limit";
		snprintf(d, sizeof(d), "%u%%", x->max_throttle);
		fprintf(f, "%-8s %-10s %10s %10s %-5s %8s %11s %9s  %s\n",
			sim_policy_name(x->policy) ? sim_policy_name(x->policy) : "?", sim_outcome_name(x->outcome),
			human_time(a, sizeof(a), x->total_ns), switched(x) ? human_time(b, sizeof(b), x->downtime_ns) : "-",
			switched(x) && x->downtime_ns <= x->downtime_limit_ns ? "met" : "no", d,
			human(c, sizeof(c), (double)x->ram_bytes + (double)x->device_bytes),
			x->ack_wait_ns ? human_time(e, sizeof(e), x->ack_wait_ns) : "-", why);
	}
	return ferror(f) ? -EIO : 0;
}

int sim_report_compare_json(FILE *f, const struct sim_scenario *sc, const struct sim_result *r, size_t n)
{
	/* the names and units of the statistics schema (docs/stats-json.md)
	 * for the figures it has */
	fprintf(f, "{\"schema-version\":%d,\"scenario\":", PRECOPY_STATS_JSON_SCHEMA);
	json_str(f, sc->source);
	fprintf(f, ",\"downtime-limit\":%.3f,\"compare\":[", ms(sc->downtime_limit_ns));
	for (size_t i = 0; i < n; i++) {
		const struct sim_result *x = &r[i];

		fprintf(f, "%s{\"policy\":\"%s\",\"outcome\":\"%s\",\"iterations\":%llu,\"total-time\":%.3f,", i ? "," : "",
			sim_policy_name(x->policy) ? sim_policy_name(x->policy) : "?", sim_outcome_name(x->outcome),
			(unsigned long long)x->iterations, ms(x->total_ns));
		json_ms_or_null(f, "downtime", x->downtime_ns, !switched(x));
		fprintf(f, ",\"limit-met\":%s,\"max-throttle\":%u,\"bytes-sent\":%llu,\"ram\":{\"transferred\":%llu},"
			   "\"device\":{\"transferred\":%llu},\"ack-wait\":%.3f,\"reason\":",
			switched(x) && x->downtime_ns <= x->downtime_limit_ns ? "true" : "false", x->max_throttle,
			(unsigned long long)(x->ram_bytes + x->device_bytes), (unsigned long long)x->ram_bytes,
			(unsigned long long)x->device_bytes, ms(x->ack_wait_ns));
		json_str(f, x->error[0] ? x->error : NULL);
		fputc('}', f);
	}
	fprintf(f, "]}\n");
	return ferror(f) ? -EIO : 0;
}
