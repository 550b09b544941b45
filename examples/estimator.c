/* SPDX-License-Identifier: MIT */
/* examples/estimator.c — the switchover decision alone, on numbers a VMM
 * measured. The estimator (precopy/engine.h) is pure arithmetic: no
 * clock, no syscall, no device. A VMM that moves RAM and device state its
 * own way records each pre-copy iteration (what it sent, how long that
 * took, what the guest dirtied meanwhile, what is still pending) and each
 * device's status, and asks whether the downtime limit can be met now.
 *
 * Without arguments it replays a built-in log: a 16 GiB guest with one
 * GPU (512 MiB of stop-copy state) over a 25 Gbit/s link. The guest first
 * dirties about as fast as the link sends; once it dirtied more than half
 * of what was sent in two 1 s periods in a row the estimator asks for
 * vCPU throttling, then 10% more after each such period; the throttled
 * guest converges, the destination's switchover-ack has arrived, and the
 * estimator switches over once the expected downtime fits the 300 ms
 * limit. With a file argument
 * it replays that file instead, one iteration per line:
 *     end_ms send_ms sent_MiB dirtied_MiB pending_MiB \
 *     gpu_stop_copy_MiB gpu_initial_MiB gpu_dirty_MiB ack(0/1)
 * ('#' starts a comment).
 *
 * Build: cc estimator.c $(pkg-config --cflags --libs libprecopy)
 * Exit status: 0 when the log was replayed (whatever was decided), 1 on
 * a library error, 2 for a bad file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <precopy.h>

#define MiB (1024.0 * 1024.0)

struct sample {
	double end_ms, send_ms, sent, dirtied, pending;  /* MiB for sizes */
	double gpu_stop_copy, gpu_initial, gpu_dirty;
	int ack;
};

/* What the built-in VMM saw (sizes in MiB). */
static const struct sample builtin[] = {
	/* the first pass sends all 16 GiB; the guest dirties 4 GiB meanwhile */
	{  5900, 5800, 16384, 4096, 4096, 512, 900, 40, 0 },
	/* the guest dirties as fast as the link sends: no progress */
	{  7300, 1380,  4096, 4200, 4200, 512, 300, 60, 0 },
	{  8750, 1420,  4200, 4300, 4300, 512,   0, 60, 0 },
	{ 10230, 1450,  4300, 4400, 4400, 512,   0, 60, 0 },
	{ 11740, 1480,  4400, 4400, 4400, 512,   0, 60, 1 },
	{ 13250, 1480,  4400, 4400, 4400, 512,   0, 60, 1 },
	{ 14760, 1480,  4400, 4400, 4400, 512,   0, 60, 1 },
	/* throttled vCPUs dirty less: the pending set shrinks */
	{ 16270, 1480,  4400, 2000, 2000, 512,   0, 50, 1 },
	{ 16960,  680,  2000,  500,  500, 512,   0, 40, 1 },
	{ 17140,  170,   500,  100,  100, 512,   0, 30, 1 },
};

static int parse(const char *path, struct sample **out, size_t *n)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t cap = 0, lineno = 0;

	if (!f) {
		fprintf(stderr, "estimator: %s: %s\n", path, strerror(errno));
		return -1;
	}
	*out = NULL;
	*n = 0;
	while (fgets(line, sizeof(line), f)) {
		struct sample s;
		char *hash = strchr(line, '#');
		int fields;

		lineno++;
		if (hash)
			*hash = 0;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		fields = sscanf(line, "%lf %lf %lf %lf %lf %lf %lf %lf %d", &s.end_ms, &s.send_ms, &s.sent,
				&s.dirtied, &s.pending, &s.gpu_stop_copy, &s.gpu_initial, &s.gpu_dirty, &s.ack);
		if (fields != 9) {
			fprintf(stderr, "estimator: %s:%zu: 9 numbers expected, %d read\n", path, lineno,
				fields < 0 ? 0 : fields);
			fclose(f);
			free(*out);
			return -1;
		}
		if (*n == cap) {
			struct sample *p = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof(*p));
			if (!p) {
				fclose(f);
				free(*out);
				return -1;
			}
			*out = p;
		}
		(*out)[(*n)++] = s;
	}
	fclose(f);
	return 0;
}

static double ms(uint64_t ns)
{
	return ns == PRECOPY_UNBOUNDED ? -1.0 : (double)ns / 1e6;
}

int main(int argc, char **argv)
{
	const struct sample *log = builtin;
	struct sample *loaded = NULL;
	size_t n = sizeof(builtin) / sizeof(builtin[0]);
	struct precopy_estimator *est;
	struct precopy_policy policy;
	int err, status = 0;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: %s [LOG]  (see the comment at the top of estimator.c)\n", argv[0]);
		return 2;
	}
	if (argc == 2) {
		if (parse(argv[1], &loaded, &n) < 0)
			return 2;
		log = loaded;
	}

	precopy_policy_defaults(&policy); /* 300 ms limit, throttle 20/+10/99 */
	est = precopy_estimator_new(&policy, &err);
	if (!est) {
		fprintf(stderr, "estimator: precopy_estimator_new: %s\n", strerror(-err));
		free(loaded);
		return 1;
	}
	printf("iter  bandwidth   dirty rate   rho   pending  expected downtime  action\n");
	for (size_t i = 0; i < n; i++) {
		const struct sample *s = &log[i];
		struct precopy_iteration it = {
			.end_ns = (uint64_t)(s->end_ms * 1e6),
			.send_ns = (uint64_t)(s->send_ms * 1e6),
			.bytes_sent = (uint64_t)(s->sent * MiB),
			.dirtied_bytes = (uint64_t)(s->dirtied * MiB),
			.ram_pending = (uint64_t)(s->pending * MiB),
		};
		struct precopy_device_status gpu = {
			.stop_copy_bytes = (uint64_t)(s->gpu_stop_copy * MiB),
			.initial_bytes = (uint64_t)(s->gpu_initial * MiB),
			.dirty_bytes = (uint64_t)(s->gpu_dirty * MiB),
			.transition_ns = 20000000, /* the GPU's measured STOP_COPY arc */
			.stop_copy_known = 1,
			.pre_copy = 1,
		};
		struct precopy_decision d;
		int r;

		if ((r = precopy_estimator_record(est, &it)) < 0 ||
		    (r = precopy_estimator_decide(est, &gpu, 1, s->ack, it.end_ns, &d)) < 0) {
			fprintf(stderr, "estimator: iteration %zu: %s\n", i + 1, strerror(-r));
			status = 1;
			break;
		}
		printf("%4llu %7.0f MB/s %7.0f MB/s %5.2f %6.0f MiB %11.1f ms       %s",
		       (unsigned long long)d.iteration, (double)d.bandwidth_Bps / 1e6,
		       (double)d.dirty_rate_Bps / 1e6, d.rho, (double)d.pending_bytes / MiB,
		       ms(d.expected_downtime_ns), precopy_action_name(d.action));
		if (d.action == PRECOPY_THROTTLE)
			printf(" to %u%%", d.throttle);
		if (d.blocked)
			printf(" (blocked:%s%s%s%s%s%s%s)", d.blocked & PRECOPY_BLOCK_DOWNTIME ? " downtime" : "",
			       d.blocked & PRECOPY_BLOCK_UNKNOWN_SIZE ? " unknown size" : "",
			       d.blocked & PRECOPY_BLOCK_INITIAL_BYTES ? " initial bytes" : "",
			       d.blocked & PRECOPY_BLOCK_ACK ? " ack" : "",
			       d.blocked & PRECOPY_BLOCK_NO_BANDWIDTH ? " no bandwidth" : "",
			       d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR ? " device floor" : "",
			       d.blocked & PRECOPY_BLOCK_WORKING_SET ? " working set" : "");
		printf("\n");
		if (d.action == PRECOPY_SWITCHOVER || d.action == PRECOPY_FORCE_SWITCHOVER ||
		    d.action == PRECOPY_ABORT) {
			char json[1024];

			if (*d.reason)
				printf("reason: %s\n", d.reason);
			if (precopy_decision_json(&d, json, sizeof(json)) < (int)sizeof(json))
				printf("decision: %s\n", json);
			printf("%s at iteration %llu: expected downtime %.1f ms, limit %.1f ms\n",
			       precopy_action_name(d.action), (unsigned long long)d.iteration,
			       ms(d.expected_downtime_ns), ms(policy.downtime_limit_ns));
			break;
		}
	}
	precopy_estimator_free(est);
	free(loaded);
	return status;
}
