/* SPDX-License-Identifier: MIT */
/* sim/policy.h — other VMMs' pre-copy rules as decision functions, for
 * precopy-sim's VMM role (sim/simulate.c). Each rule reads only what a VMM
 * of that kind reads (bytes still to send, what it sent and when, its pass
 * count, its own throttle) and answers continue, a throttle level, switch
 * over, force or give up. The rules, their sources and what they do not
 * cover are in docs/policies.md.
 *
 * Not a public header: sim/simulate.c and the tests use it. No global
 * state: one struct sim_vmm per run.
 */
#ifndef PRECOPY_SIM_POLICY_H
#define PRECOPY_SIM_POLICY_H

#include <stdint.h>

#define SIM_QEMU_WINDOW_NS 100000000ull  /* QEMU's rate-limit window (BUFFER_DELAY) */
#define SIM_QEMU_PERIOD_NS 1000000000ull /* auto-converge looks at periods of > 1 s */
#define SIM_QEMU_TRIGGER_PCT 50u         /* throttle-trigger-threshold's default */
#define SIM_CH_DEFAULT_TIMEOUT_NS (3600ull * 1000000000ull) /* CH v52 default: 1 h */
#define SIM_XEN_MAX_ITERATIONS 5u
#define SIM_XEN_TARGET_DIRTY 50u         /* pages */

struct sim_vmm_params {
	int policy;                  /* enum sim_policy, not PRECOPY */
	uint64_t limit_ns;           /* the downtime limit */
	uint64_t timeout_ns;         /* the scenario's timeout (0: none) */
	uint32_t timeout_action;     /* enum precopy_timeout_action */
	/* QEMU auto-converge: on when throttle_initial > 0 */
	uint32_t throttle_initial, throttle_increment, throttle_max;
	uint64_t switchover_bw_Bps;  /* QEMU avail-switchover-bandwidth (0: measured) */
	uint64_t page_size;
};

enum sim_vmm_point {
	SIM_VMM_WINDOW = 0, /* after a window of sending inside a pass: no sync since
			     * the last decision, RAM pending from the log */
	SIM_VMM_SYNCED = 1, /* right after a sync (the engine's exact query) */
};

struct sim_vmm_input {
	int point;               /* enum sim_vmm_point */
	int pass_end;            /* SYNCED: the pass had handed out every page */
	int ack_ok;              /* the switchover-ack arrived, or none is needed */
	uint64_t now_ns;         /* virtual time since the start of the migration */
	uint64_t link_bytes;     /* everything put on the link so far */
	uint64_t ram_pending;    /* dirty RAM bytes not sent yet */
	uint64_t dev_precopy;    /* device pre-copy bytes not sent yet (last known) */
	uint64_t dev_stop_copy;  /* device stop-copy bytes (last known; UINT64_MAX: unknown) */
	uint64_t dirtied_bytes;  /* SYNCED: RAM bytes newly dirty since the last decision */
	uint64_t pass_ram_bytes; /* SYNCED at a pass end: RAM bytes the pass sent */
	uint64_t pass_ram_ns;    /*   and the link time they took */
};

enum sim_vmm_action {
	SIM_VMM_CONTINUE = 0,
	SIM_VMM_SYNC = 1,       /* WINDOW: the rule wants the exact figure now */
	SIM_VMM_SWITCHOVER = 2, /* its criterion is met */
	SIM_VMM_FORCE = 3,      /* switch over without it (timeout with ignore/force) */
	SIM_VMM_CANCEL = 4,     /* give up (timeout with cancel) */
};

struct sim_vmm_decision {
	int action;                    /* enum sim_vmm_action */
	int ack_held;                  /* it would switch over; the ack is missing */
	uint32_t throttle;             /* percent, the rule's own */
	uint64_t bandwidth_Bps;        /* the rule's bandwidth figure (0: none yet) */
	uint64_t expected_downtime_ns; /* the rule's estimate (UINT64_MAX: none) */
	const char *reason;            /* static text for SWITCHOVER / FORCE / CANCEL */
};

struct sim_vmm {
	struct sim_vmm_params p;
	uint32_t throttle;
	/* QEMU: the last window's bandwidth and threshold; auto-converge period */
	uint64_t win_start_ns, win_start_bytes, bw, threshold;
	uint64_t period_start_ns, period_start_bytes, period_dirty;
	uint32_t high_cnt;
	/* CH: the last pass's memory bandwidth */
	uint64_t ch_bw;
	/* Xen: passes done, and whether the pass under way is the last live one */
	uint64_t passes;
	int last_pass;
};

void sim_vmm_init(struct sim_vmm *v, const struct sim_vmm_params *p);
void sim_vmm_decide(struct sim_vmm *v, const struct sim_vmm_input *in, struct sim_vmm_decision *d);

#endif /* PRECOPY_SIM_POLICY_H */
