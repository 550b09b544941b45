/* SPDX-License-Identifier: MIT */
/* vmm/vmm.h — precopy-vmm's internal interfaces: the VM (vm.c), the
 * connection and its framing (net.c), the source and destination flows
 * (source.c, dest.c), the command line (main.c). Not a library: every
 * function here reports errors by printing them (naming the step) and
 * returning -errno or -1. */
#ifndef PRECOPY_VMM_H
#define PRECOPY_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <linux/kvm.h>

struct vmm_opts;

#define VMM_PAGE 4096u
#define VMM_BOOT_GPA 0x7c00u

/* exit statuses */
#define VMM_EXIT_OK 0
#define VMM_EXIT_ERROR 1
#define VMM_EXIT_USAGE 2
#define VMM_EXIT_RESUMED 3  /* source: migration did not complete, the guest runs on here */
#define VMM_EXIT_VERIFY 4   /* destination: RAM digest mismatch, guest not started */

extern _Atomic int vmm_quit; /* SIGINT / SIGTERM seen */

uint64_t vmm_now_ns(void);
void vmm_sleep_ns(uint64_t ns);
void vmm_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vmm_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int vmm_quiet;
/* PRECOPY_VMM_TRACE set: a timestamped line (ms since `since`) on stderr */
void vmm_trace(uint64_t since, const char *what);

/* ---- the serial port (COM1, 0x3f8) -------------------------------------- */
struct vmm_serial_state {
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr, pad;
};

/* ---- the vCPU state, saved when it parks, restored before it runs ------ */
#define VMM_STATE_MAGIC 0x53435650u /* "PVCS" */
#define VMM_STATE_VERSION 1u
struct vmm_vcpu_state {
	uint32_t magic, version, size, pad;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_vcpu_events events;
	struct vmm_serial_state serial;
	uint64_t serial_lines; /* lines the guest wrote so far (statistics) */
};

struct vmm_vm {
	int kvm_fd, vm_fd, vcpu_fd;
	uint8_t *ram;
	int ram_fd;          /* the memfd behind ram (shared), or -1 (anonymous) */
	uint64_t mem;
	struct kvm_run *run;
	size_t run_size;
	/* serial output */
	int serial_fd;
	char line[256];
	size_t line_len;
	struct vmm_serial_state serial;
	_Atomic uint64_t serial_lines;
	char last_line[256];
	/* the vCPU thread */
	pthread_t thread;
	int started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic int stop_req, parked, quit, failed;
	_Atomic uint32_t throttle_pct;   /* the engine's throttle, percent */
	_Atomic uint64_t throttle_sleep_ns; /* a sleep the throttle thread asks for */
	_Atomic int ring_full;           /* waiting for a dirty-ring harvest */
	_Atomic uint64_t running_since_ns; /* when the vCPU last (re)entered the guest */
	_Atomic uint64_t kicked_out_ns;    /* when a kick last ended a KVM_RUN */
	pthread_t throttle_thread;
	int throttle_started;
	int restore_pending;
	struct vmm_vcpu_state saved;    /* taken at each park */
	struct vmm_vcpu_state restore;  /* applied before the next run */
	char errmsg[256];
};

/* Create the VM with `mem` bytes of RAM at guest-physical 0 (prealloc:
 * populate the mapping now; shared: in a memfd, vm->ram_fd, that device
 * servers can map; else anonymous memory, whose untouched pages read as
 * the zero page without being allocated). */
int vmm_vm_create(struct vmm_vm *vm, uint64_t mem, int prealloc, int shared, const char *serial_path);
/* The vCPU (after the engine in dirty-ring mode), in real mode at 0x7c00
 * with the guest's parameters in EBX, ECX, EDX, ESI. */
int vmm_vm_create_vcpu(struct vmm_vm *vm, const uint32_t params[4]);
int vmm_vm_load(struct vmm_vm *vm, const void *image, size_t len);
/* Start the vCPU thread (paused: parked until vmm_vm_resume()). */
int vmm_vm_start(struct vmm_vm *vm, int paused);
/* Park the vCPU (its state saved in vm->saved); bounded wait. */
int vmm_vm_pause(struct vmm_vm *vm, uint64_t timeout_ns);
/* Let it run again (restoring vm->restore first if restore_pending). */
void vmm_vm_resume(struct vmm_vm *vm);
/* Wait until the vCPU entered the guest after a resume; its time. */
int vmm_vm_wait_running(struct vmm_vm *vm, uint64_t timeout_ns, uint64_t *when);
/* Wake the vCPU from the guest (it re-checks its flags). */
void vmm_vm_kick(struct vmm_vm *vm);
int vmm_vm_throttle_start(struct vmm_vm *vm);
/* Stop the vCPU and throttle threads for good. */
void vmm_vm_join(struct vmm_vm *vm);
void vmm_vm_destroy(struct vmm_vm *vm);
int vmm_guest_params(const struct vmm_opts *o, uint64_t mem, uint32_t params[4]);
void vmm_serial_flush(struct vmm_vm *vm);

/* the guests built into the program */
int vmm_guest_lookup(const char *name, const uint8_t **image, size_t *len);

/* A 64-bit digest of guest RAM (pages of `len` bytes at ram); written,
 * if not NULL, has a byte per page, 0 for a page known to be zero. */
uint64_t vmm_digest(const uint8_t *ram, uint64_t len, const uint8_t *written);
int vmm_page_is_zero(const void *p);

/* ---- the connection ------------------------------------------------------ */
/* Frame header (16 bytes, little endian):
 *   u16 magic 0x5056 ("PV"), u16 kind, u32 len (payload bytes), u64 arg */
#define VMM_FRAME_MAGIC 0x5056u
enum vmm_frame_kind {
	VMM_F_HELLO = 1,   /* arg: guest RAM bytes; payload: struct vmm_hello */
	VMM_F_PAGE = 2,    /* arg: gpa; payload: 4096 bytes */
	VMM_F_ZERO = 3,    /* arg: gpa; the page is all zero */
	VMM_F_STREAM = 4,  /* payload: device-state stream bytes */
	VMM_F_RP = 5,      /* destination -> source: return-path bytes */
	VMM_F_STOP = 6,    /* arg: the source's vCPU stop time (CLOCK_MONOTONIC ns) */
	VMM_F_DONE = 7,    /* payload: struct vmm_done */
	VMM_F_RESUMED = 8, /* destination -> source: arg: its vCPU resume time */
	VMM_F_ABORT = 9,   /* either way: payload: reason text */
	VMM_F_DIGEST = 10, /* source -> destination, after DONE (--verify): arg: the RAM digest */
};
#define VMM_FRAME_HDR 16u
#define VMM_STREAM_MAX (1u << 20)

#define VMM_HELLO_MAGIC "precopy-vmm\0"
#define VMM_PROTO_VERSION 2u /* 2: the device count in HELLO */
struct vmm_hello {
	char magic[12];
	uint32_t version;
	uint64_t mem;
	uint32_t page_size;
	uint32_t flags; /* VMM_HELLO_VERIFY */
	uint32_t devices; /* vfio-user devices in the stream (ids VMM_DEVICE_ID0...) */
	uint32_t pad;
};
#define VMM_HELLO_VERIFY 1u

struct vmm_done {
	uint64_t stop_ns;           /* the source's vCPU stop time */
	uint64_t expected_ns;       /* the engine's expected downtime */
	uint64_t reserved;
	uint32_t has_digest, pad;   /* 1: a DIGEST frame follows */
	uint64_t pages_sent;        /* PAGE + ZERO frames in the migration */
};

struct vmm_frame {
	uint16_t kind;
	uint32_t len;
	uint64_t arg;
	uint8_t *payload; /* points into the connection's buffer */
};

struct vmm_conn {
	int fd;
	uint64_t io_timeout_ns;
	/* sending */
	uint8_t *obuf;
	size_t olen, ocap;
	uint64_t rate_Bps;       /* 0: unlimited */
	double tokens;           /* bytes that may go now (may be negative) */
	uint64_t tokens_ns;
	uint64_t sent;           /* bytes written to the socket */
	uint64_t limit_wait_ns;  /* time spent waiting for tokens */
	uint64_t full_wait_ns;   /* time spent waiting for room in the socket */
	void (*idle)(void *ctx); /* called while waiting (ring harvests) */
	void *idle_ctx;
	/* receiving */
	uint8_t *ibuf;
	size_t ihead, itail, icap;
	uint64_t received;
	int eof;
};

int vmm_conn_init(struct vmm_conn *c, int fd, uint64_t rate_Bps);
void vmm_conn_free(struct vmm_conn *c);
int vmm_connect(const char *spec, uint64_t timeout_ns);            /* "tcp:HOST:PORT" */
int vmm_listen(const char *spec);
int vmm_accept(int lfd, uint64_t timeout_ns);
/* Queue a frame (flushing under the rate limit when the buffer fills). */
int vmm_send(struct vmm_conn *c, uint16_t kind, uint64_t arg, const void *payload, uint32_t len);
int vmm_flush(struct vmm_conn *c);
/* Next frame: 1 (in *f, valid until the next call), 0 none within
 * timeout_ns (0: do not wait), -EPIPE end of file, -EPROTO garbage,
 * other -errno. */
int vmm_recv(struct vmm_conn *c, struct vmm_frame *f, uint64_t timeout_ns, char *why, size_t whylen);

/* ---- devices (device.c): vfio-user servers ------------------------------- */
#define VMM_MAX_DEVICES 8
#define VMM_DEVICE_ID0 2u /* stream ids: 1 is the vCPU back-end, then the devices in order */

struct precopy_vfio_user;
struct vmm_device {
	const char *path;               /* the server's socket (--device vfio-user:PATH) */
	char name[64];                  /* the path, shortened from the left to fit */
	uint64_t stop_copy_hint;        /* its expected STOP_COPY bytes, 0: unknown */
	struct precopy_vfio_user *c;
};

/* Connect to each server, check that it can migrate, and DMA-map all of
 * guest RAM (the memfd) at IOVA 0, read and write. On failure the message
 * names the device and the step; what was opened is closed. */
int vmm_devices_open(struct vmm_device *devs, unsigned n, struct vmm_vm *vm, uint64_t timeout_ms);
void vmm_devices_close(struct vmm_device *devs, unsigned n);
/* Answer the servers' commands (DMA by message) for up to timeout_ns:
 * returns 0 or -errno, with *which the device that failed. */
int vmm_devices_serve(struct vmm_device *devs, unsigned n, uint64_t timeout_ns, unsigned *which);
/* The first device whose server hung up or whose connection broke, or -1
 * (between the engine's calls: it may answer a server's commands). */
int vmm_devices_failed(struct vmm_device *devs, unsigned n);
/* "vfio-user device PATH" + its client's last message, into buf. */
void vmm_device_describe(const struct vmm_device *d, char *buf, size_t len);
/* Prefix the message in buf with "vfio-user device PATH failed: " (its
 * end cut to fit). */
void vmm_device_blame(const struct vmm_device *d, char *buf, size_t len);

/* ---- the flows ------------------------------------------------------------ */
struct vmm_opts {
	const char *guest;        /* built-in name or file */
	uint64_t mem;
	uint64_t work_start, work_size; /* 0: defaults */
	uint32_t every;           /* marker period */
	const char *migrate_to;
	const char *incoming;
	uint64_t max_bw;          /* bytes/s, 0: unlimited */
	uint64_t limit_ms;
	int auto_converge;
	int dirty_log;            /* enum precopy_kvm_mode */
	uint64_t timeout_s;       /* migration timeout (policy), 0: none */
	uint64_t delay_ms;        /* run this long before migrating */
	uint64_t run_for_ms;      /* destination / no migration: run this long (0: until a signal) */
	int verify;
	int prealloc;
	const char *serial;       /* output file, NULL: stdout */
	int json;
	const char *json_path;    /* NULL: stdout */
	uint64_t io_timeout_ms;
	const char *devices[VMM_MAX_DEVICES]; /* --device vfio-user:PATH, the paths */
	uint64_t device_hints[VMM_MAX_DEVICES]; /* ,stop-copy=SIZE (0: none) */
	unsigned ndevices;
};

int vmm_source(const struct vmm_opts *o);
int vmm_dest(const struct vmm_opts *o);
int vmm_run_only(const struct vmm_opts *o);

#endif
