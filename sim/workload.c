/* SPDX-License-Identifier: MIT */
/* Synthetic guest workloads: they set bits in the engine's live RAM bitmap
 * (one bit per guest page) as the guest would dirty pages, at a rate in
 * bytes per second of virtual time, scaled by the throttle.
 *
 * The only per-page work is setting a bit: sequential runs go through
 * precopy_bitmap_set_range(); random pages come from splitmix64 mapped to
 * [0, n) by a 128-bit multiply (no modulo bias worth speaking of, no
 * division), and are ORed straight into the words (the simulator is the
 * only writer, the engine harvests between calls). Zipf ranks come from
 * rejection-inversion sampling (Hörmann and Derflinger), O(1) per write,
 * and are scattered over RAM by a multiplication with an odd constant
 * coprime to the page count, so that the hottest pages are not adjacent.
 *
 * Page-write counts carry their fractional remainder from one call to the
 * next (128-bit arithmetic), so the same virtual interval split in any way
 * produces the same number of writes, and the same seed the same pages. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "simulator.h"

struct sim_workload {
	const struct sim_scenario *sc;
	struct precopy_bitmap *live;
	uint64_t npages, hot_pages, hot_threshold;
	uint64_t t_ns;               /* time written up to */
	unsigned __int128 credit;    /* byte-nanoseconds not yet a whole write */
	uint64_t rng;
	uint64_t state_of_max;       /* splitmix_state_of_max() */
	uint64_t seq;                /* sequential cursor */
	uint64_t seq_pages;          /* sequential: pages swept */
	uint64_t next;               /* wp_fault: the page the next write goes to */
	int have_next;
	uint64_t scatter;            /* zipf: rank -> page multiplier */
	uint32_t throttle;
	int stopped;
	uint64_t writes;
	size_t trace_next;           /* next trace event */
	uint64_t trace_base;         /* start of the current trace cycle */
	/* zipf (rejection-inversion) constants */
	double z_s, z_hx1, z_hn, z_q;
	double z_harm;               /* sum of k^-s over every rank (0: not yet) */
};

#define SPLITMIX_STEP 0x9E3779B97F4A7C15ull
#define SPLITMIX_M1 0xBF58476D1CE4E5B9ull
#define SPLITMIX_M2 0x94D049BB133111EBull

static inline uint64_t splitmix_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * SPLITMIX_M1;
	z = (z ^ (z >> 27)) * SPLITMIX_M2;
	return z ^ (z >> 31);
}

static uint64_t splitmix(uint64_t *s)
{
	return splitmix_mix(*s += SPLITMIX_STEP);
}

/* x such that x ^ (x >> k) == y (k >= 1). */
static uint64_t unxorshift(uint64_t y, unsigned k)
{
	uint64_t x = y;

	for (unsigned i = k; i < 64; i += k)
		x = y ^ (x >> k);
	return x;
}

/* The inverse of odd m modulo 2^64 (Newton: each step doubles the bits). */
static uint64_t inverse_odd(uint64_t m)
{
	uint64_t x = m; /* right to 3 bits: m * m == 1 mod 8 */

	for (int i = 0; i < 5; i++)
		x *= 2 - m * x;
	return x;
}

/* The state (after its step) at which splitmix() returns UINT64_MAX: its
 * mixing is a bijection, so there is exactly one. */
static uint64_t splitmix_state_of_max(void)
{
	uint64_t z = unxorshift(UINT64_MAX, 31);

	z = unxorshift(z * inverse_odd(SPLITMIX_M2), 27);
	return unxorshift(z * inverse_odd(SPLITMIX_M1), 30);
}

static inline uint64_t below(uint64_t r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

static inline void set_page(uint64_t *words, uint64_t p)
{
	words[p >> 6] |= 1ull << (p & 63);
}

/* ---- zipf by rejection-inversion ---------------------------------------- */

static double h_fn(const struct sim_workload *w, double x)
{
	return exp(-w->z_s * log(x));
}

/* (exp(x) - 1) / x, and log(1 + x) / x, stable near 0 */
static double expm1_over(double x)
{
	return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x / 2.0;
}

static double log1p_over(double x)
{
	return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x / 2.0;
}

/* the integral of h from 1 to x, shifted: H(x) = (x^(1-s) - 1) / (1 - s) */
static double h_int(const struct sim_workload *w, double x)
{
	double lx = log(x);
	return expm1_over((1.0 - w->z_s) * lx) * lx;
}

static double h_int_inv(const struct sim_workload *w, double y)
{
	double t = y * (1.0 - w->z_s);
	if (t < -1.0)
		t = -1.0; /* rounding at the far end */
	return exp(log1p_over(t) * y);
}

static void zipf_init(struct sim_workload *w)
{
	w->z_s = w->sc->zipf_s;
	w->z_hx1 = h_int(w, 1.5) - 1.0;
	w->z_hn = h_int(w, (double)w->npages + 0.5);
	w->z_q = 2.0 - h_int_inv(w, h_int(w, 2.5) - h_fn(w, 2.0));
}

/* A rank in [0, npages): 0 is the most written. */
static uint64_t zipf_rank(struct sim_workload *w)
{
	for (;;) {
		double u01 = (double)(splitmix(&w->rng) >> 11) * 0x1.0p-53;
		double u = w->z_hn + u01 * (w->z_hx1 - w->z_hn);
		double x = h_int_inv(w, u);
		double kd = floor(x + 0.5);
		uint64_t k;

		if (kd < 1.0)
			kd = 1.0;
		if (kd > (double)w->npages)
			kd = (double)w->npages;
		k = (uint64_t)kd;
		if (kd - x <= w->z_q || u >= h_int(w, kd + 0.5) - h_fn(w, kd))
			return k - 1;
	}
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* ---- the writers -------------------------------------------------------- */

static void write_uniform(struct sim_workload *w, uint64_t n)
{
	uint64_t *words = w->live->words, np = w->npages;

	for (uint64_t i = 0; i < n; i++)
		set_page(words, below(splitmix(&w->rng), np));
}

static void write_hotset(struct sim_workload *w, uint64_t n)
{
	uint64_t *words = w->live->words, np = w->npages, hp = w->hot_pages, th = w->hot_threshold;
	uint64_t rng = w->rng; /* a local: the stores to words cannot touch it */

	if (th == UINT64_MAX && splitmix_mix(w->state_of_max) == UINT64_MAX) {
		/* Every write is hot but the one whose first draw is
		 * UINT64_MAX: known by its state, without mixing it. */
		const uint64_t cold = w->state_of_max;

		for (uint64_t i = 0; i < n; i++) {
			uint64_t sa = (rng += SPLITMIX_STEP), b = splitmix(&rng);
			set_page(words, below(b, sa != cold ? hp : np));
		}
	} else {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t a = splitmix(&rng), b = splitmix(&rng);
			set_page(words, below(b, a < th ? hp : np));
		}
	}
	w->rng = rng;
}

static void write_zipf(struct sim_workload *w, uint64_t n)
{
	uint64_t *words = w->live->words, np = w->npages;

	for (uint64_t i = 0; i < n; i++)
		set_page(words, (uint64_t)(((unsigned __int128)zipf_rank(w) * w->scatter) % np));
}

static void write_sequential(struct sim_workload *w, uint64_t n)
{
	if (n >= w->seq_pages) {
		/* every page; the cursor ends where n single steps leave it */
		precopy_bitmap_set_range(w->live, 0, w->seq_pages);
		w->seq = (uint64_t)(((unsigned __int128)w->seq + n) % w->seq_pages);
		return;
	}
	while (n) {
		uint64_t take = w->seq_pages - w->seq;

		if (take > n)
			take = n;
		precopy_bitmap_set_range(w->live, w->seq, take);
		w->seq += take;
		if (w->seq == w->seq_pages)
			w->seq = 0;
		n -= take;
	}
}

/* ---- write protection ---------------------------------------------------- */

/* The page the model writes next (draws what one write of write_pages()
 * draws). */
static uint64_t next_page(struct sim_workload *w)
{
	uint64_t p, a, b;

	switch (w->sc->model) {
	case SIM_MODEL_HOTSET:
		a = splitmix(&w->rng);
		b = splitmix(&w->rng);
		return a < w->hot_threshold ? below(b, w->hot_pages) : below(b, w->npages);
	case SIM_MODEL_ZIPF:
		return (uint64_t)(((unsigned __int128)zipf_rank(w) * w->scatter) % w->npages);
	case SIM_MODEL_SEQUENTIAL:
		p = w->seq;
		if (++w->seq == w->seq_pages)
			w->seq = 0;
		return p;
	default:
		return below(splitmix(&w->rng), w->npages);
	}
}

/* dt ns of guest time at rate, one write at a time: a write to a page
 * whose bit is clear (write-protected since the engine's last harvest, or
 * since logging began) also costs wp_fault_ns of the guest's time, as the
 * fault KVM takes on a page it re-protected at a sync. Credit is guest
 * time x rate, so throttling (less time) and faults (time spent) combine;
 * a write that does not fit waits for the next call. */
static void run_wp(struct sim_workload *w, uint64_t rate, uint64_t dt)
{
	unsigned __int128 unit = (unsigned __int128)w->sc->page_size * 1000000000u * 100u;
	unsigned __int128 fault = (unsigned __int128)rate * w->sc->wp_fault_ns * 100u;
	uint64_t *words = w->live->words;

	w->credit += (unsigned __int128)rate * dt * (100u - w->throttle);
	for (;;) {
		unsigned __int128 cost;

		if (!w->have_next) {
			w->next = next_page(w);
			w->have_next = 1;
		}
		cost = unit;
		if (!(words[w->next >> 6] >> (w->next & 63) & 1))
			cost += fault;
		if (w->credit < cost)
			return;
		w->credit -= cost;
		set_page(words, w->next);
		w->writes++;
		w->have_next = 0;
	}
}

/* ---- many writes at once ------------------------------------------------- */

/* A uniform double in (0, 1]. */
static double unit_open(struct sim_workload *w)
{
	return ((double)(splitmix(&w->rng) >> 11) + 1.0) * 0x1.0p-53;
}

/* n writes over pages [lo, hi), each page written by one write with
 * probability p: a page is left as it was with probability r = (1 - p)^n,
 * else set. Walks geometric gaps (between the pages left when r <= 1/2,
 * between the pages set otherwise): O(pages x min(r, 1 - r)) draws plus
 * the runs set. */
static void write_region(struct sim_workload *w, uint64_t lo, uint64_t hi, double p, uint64_t n)
{
	double lr = (double)n * log1p(-p), r = exp(lr);
	uint64_t pos = lo;

	if (lo >= hi || !(p > 0.0))
		return; /* no write lands here */
	if (r < 0x1.0p-64) {
		precopy_bitmap_set_range(w->live, lo, hi - lo);
		return;
	}
	if (r <= 0.5) {
		/* set runs of pages, skipping each page left alone */
		double l1r = log1p(-r);
		while (pos < hi) {
			double g = floor(log(unit_open(w)) / l1r);
			uint64_t run = !(g < (double)(hi - pos)) ? hi - pos : (uint64_t)g;

			precopy_bitmap_set_range(w->live, pos, run);
			pos += run + 1;
		}
	} else {
		/* set single pages, skipping runs of pages left alone */
		uint64_t *words = w->live->words;
		while (pos < hi) {
			double g = floor(log(unit_open(w)) / lr);

			if (!(g < (double)(hi - pos)))
				break;
			pos += (uint64_t)g;
			set_page(words, pos++);
		}
	}
}

/* Zipf: page of rank k written with probability p_k = k^-s / H(N, s). */
static void write_zipf_many(struct sim_workload *w, uint64_t n)
{
	uint64_t *words = w->live->words, np = w->npages;

	if (w->z_harm == 0.0)
		for (uint64_t k = np; k >= 1; k--) /* smallest terms first */
			w->z_harm += h_fn(w, (double)k);
	for (uint64_t k = 1; k <= np; k++) {
		double pk = h_fn(w, (double)k) / w->z_harm, r = exp((double)n * log1p(-pk));

		if (r < 0x1.0p-64 || unit_open(w) > r)
			set_page(words, (uint64_t)(((unsigned __int128)(k - 1) * w->scatter) % np));
	}
}

/* At least as many writes as pages: per page rather than per write, so the
 * work is bounded by the memory, not by rate x time. Each page's chance of
 * being written is the one n single writes give it; pages are drawn
 * independently (the multinomial's slight negative correlation between
 * pages is not kept). */
static void write_many(struct sim_workload *w, uint64_t n)
{
	uint64_t np = w->npages, hp = w->hot_pages;
	double f;

	switch (w->sc->model) {
	case SIM_MODEL_HOTSET:
		f = w->hot_threshold == UINT64_MAX ? 1.0 : (double)w->hot_threshold * 0x1.0p-64;
		write_region(w, 0, hp, f / (double)hp + (1.0 - f) / (double)np, n);
		write_region(w, hp, np, (1.0 - f) / (double)np, n);
		break;
	case SIM_MODEL_ZIPF:
		write_zipf_many(w, n);
		break;
	default:
		write_region(w, 0, np, 1.0 / (double)np, n);
		break;
	}
}

static void write_pages(struct sim_workload *w, uint64_t n)
{
	if (!n)
		return;
	w->writes += n;
	if (n >= w->npages && w->sc->model != SIM_MODEL_SEQUENTIAL) {
		write_many(w, n);
		return;
	}
	switch (w->sc->model) {
	case SIM_MODEL_HOTSET:
		write_hotset(w, n);
		break;
	case SIM_MODEL_ZIPF:
		write_zipf(w, n);
		break;
	case SIM_MODEL_SEQUENTIAL:
		write_sequential(w, n);
		break;
	default:
		write_uniform(w, n);
		break;
	}
}

/* Writes owed for dt ns at rate (bytes/s), with the remainder carried. */
static uint64_t owed(struct sim_workload *w, uint64_t rate, uint64_t dt)
{
	unsigned __int128 unit = (unsigned __int128)w->sc->page_size * 1000000000u * 100u;
	uint64_t n;

	w->credit += (unsigned __int128)rate * dt * (100u - w->throttle);
	n = (uint64_t)(w->credit / unit);
	w->credit %= unit;
	return n;
}

/* Phases: the rate at time t and how long it holds from t. */
static uint64_t phase_at(const struct sim_scenario *sc, uint64_t t, uint64_t *hold)
{
	uint64_t cycle = 0, off;

	for (uint32_t i = 0; i < sc->nphases; i++)
		cycle += sc->phases[i].duration_ns;
	off = t % cycle;
	for (uint32_t i = 0; i < sc->nphases; i++) {
		if (off < sc->phases[i].duration_ns) {
			*hold = sc->phases[i].duration_ns - off;
			return sc->phases[i].rate_Bps;
		}
		off -= sc->phases[i].duration_ns;
	}
	*hold = cycle; /* not reached */
	return sc->phases[0].rate_Bps;
}

static void run_trace(struct sim_workload *w, uint64_t t_ns)
{
	const struct sim_scenario *sc = w->sc;
	uint64_t period = sc->trace[sc->ntrace - 1].t_ns;

	for (;;) {
		const struct sim_trace_event *ev = &sc->trace[w->trace_next];
		uint64_t at = w->trace_base + ev->t_ns;

		if (at > t_ns)
			return;
		/* a throttled guest makes proportionally fewer of the trace's
		 * writes (the remainder carries to the next event) */
		w->credit += (unsigned __int128)ev->pages * (100u - w->throttle);
		write_pages(w, (uint64_t)(w->credit / 100u));
		w->credit %= 100u;
		if (++w->trace_next == sc->ntrace) {
			if (!period)
				return; /* a single instant: written once */
			w->trace_next = 0;
			w->trace_base += period;
			/* an event at the period's end and at 0 are the same instant */
			if (sc->trace[0].t_ns == 0)
				w->trace_next = 1 < sc->ntrace ? 1 : 0;
		}
	}
}

uint64_t sim_workload_run(struct sim_workload *w, uint64_t t_ns)
{
	uint64_t before = w->writes;

	if (t_ns <= w->t_ns)
		return 0;
	if (w->stopped) {
		w->t_ns = t_ns;
		return 0;
	}
	switch (w->sc->model) {
	case SIM_MODEL_PHASES:
		while (w->t_ns < t_ns) {
			uint64_t hold, rate = phase_at(w->sc, w->t_ns, &hold);
			uint64_t dt = t_ns - w->t_ns < hold ? t_ns - w->t_ns : hold;

			write_pages(w, owed(w, rate, dt));
			w->t_ns += dt;
		}
		break;
	case SIM_MODEL_TRACE:
		run_trace(w, t_ns);
		w->t_ns = t_ns;
		break;
	default:
		if (w->sc->wp_fault_ns)
			run_wp(w, w->sc->rate_Bps, t_ns - w->t_ns);
		else
			write_pages(w, owed(w, w->sc->rate_Bps, t_ns - w->t_ns));
		w->t_ns = t_ns;
		break;
	}
	return w->writes - before;
}

void sim_workload_throttle(struct sim_workload *w, uint32_t pct)
{
	w->throttle = pct > 99 ? 99 : pct;
}

void sim_workload_stop(struct sim_workload *w)
{
	w->stopped = 1;
}

uint64_t sim_workload_writes(const struct sim_workload *w)
{
	return w->writes;
}

struct sim_workload *sim_workload_new(const struct sim_scenario *sc, struct precopy_bitmap *live, int *err)
{
	struct sim_workload *w;

	if (!sc || !live || !live->words || !sc->page_size || live->nbits != sc->memory / sc->page_size ||
	    (sc->model == SIM_MODEL_TRACE && !sc->ntrace) || (sc->model == SIM_MODEL_PHASES && !sc->nphases)) {
		*err = -EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	w->sc = sc;
	w->live = live;
	w->npages = live->nbits;
	w->rng = sc->seed ^ 0x5DEECE66Dull;
	w->state_of_max = splitmix_state_of_max();
	w->hot_pages = sc->hot_size / sc->page_size;
	if (!w->hot_pages)
		w->hot_pages = 1;
	if (w->hot_pages > w->npages)
		w->hot_pages = w->npages;
	w->seq_pages = sc->hot_size ? sc->hot_size / sc->page_size : w->npages;
	if (!w->seq_pages || w->seq_pages > w->npages)
		w->seq_pages = w->npages;
	w->hot_threshold = sc->hot_fraction >= 1.0 ? UINT64_MAX : (uint64_t)(sc->hot_fraction * 0x1.0p64);
	if (sc->model == SIM_MODEL_ZIPF) {
		zipf_init(w);
		w->scatter = 0x9E3779B97F4A7C15ull % w->npages;
		while (w->scatter < 2 || gcd(w->scatter, w->npages) != 1)
			w->scatter++;
	}
	*err = 0;
	return w;
}

void sim_workload_free(struct sim_workload *w)
{
	free(w);
}
