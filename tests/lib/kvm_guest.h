/* SPDX-License-Identifier: MIT */
/* tests/lib/kvm_guest.h — a tiny VMM for the KVM dirty-log tests: one VM,
 * a few anonymous memory slots, one vCPU in 16-bit real mode running
 * hand-assembled code. It plays the VMM's part (it owns every fd), so it
 * calls the kernel directly; only the library under test uses the sys seam.
 *
 * Functions return 0 (or the value named) or -errno.
 * Thread safety: kvm_guest_run() may run in one thread while another reads
 * guest memory; everything else is single-threaded. */
#ifndef TESTS_KVM_GUEST_H
#define TESTS_KVM_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#define KVM_GUEST_MAX_MEM 4

struct kvm_guest_mem {
	uint32_t slot;
	uint64_t gpa, size;
	uint8_t *host;
};

struct kvm_guest {
	int kvm_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	struct kvm_guest_mem mem[KVM_GUEST_MAX_MEM];
	int nmem;
};

/* Why KVM tests must be skipped here, or NULL if /dev/kvm can be opened. */
const char *kvm_guest_skip_reason(void);

/* Open /dev/kvm and create a VM. -ENOENT/-EACCES/... when there is no KVM. */
int kvm_guest_open(struct kvm_guest *g);

/* Map `size` bytes of zeroed anonymous memory and register it as `slot` at
 * guest-physical `gpa` (no flags). */
int kvm_guest_add_mem(struct kvm_guest *g, uint32_t slot, uint64_t gpa, uint64_t size);

/* Host address of guest-physical gpa, or NULL outside every slot. */
void *kvm_guest_ptr(const struct kvm_guest *g, uint64_t gpa);

/* Copy code to gpa. */
int kvm_guest_load(struct kvm_guest *g, uint64_t gpa, const void *code, size_t len);

/* Create the vCPU, map its kvm_run, and put it in real mode with every
 * segment base 0 and IP = entry. */
int kvm_guest_add_vcpu(struct kvm_guest *g, uint64_t entry);

/* One KVM_RUN. Returns the exit reason (KVM_EXIT_*) or -errno. */
int kvm_guest_run(struct kvm_guest *g);

/* Port and direction of the last KVM_EXIT_IO (port or -1). */
int kvm_guest_io_port(const struct kvm_guest *g);

/* ---- the standard test layout ------------------------------------------
 * slot 0: guest-physical 0x00000, 128 pages (code at 0x1000, mailbox page
 *         at 0x2000, data pages from 16 on)
 * slot 1: guest-physical 0x80000, 100 pages (not a multiple of 64, so the
 *         last KVM_CLEAR_DIRTY_LOG chunk ends at the slot's end)
 * Data pages are guest pages [KG_DATA_FIRST, KG_DATA_END): page p is
 * addressed by the guest with segment p << 8, so every page is below 1 MiB. */
#define KG_SLOT0_PAGES 128u
#define KG_SLOT1_GPA 0x80000u
#define KG_SLOT1_PAGES 100u
#define KG_PAGES (KG_SLOT0_PAGES + KG_SLOT1_PAGES) /* guest pages 0..227 */
#define KG_CODE_GPA 0x1000u
#define KG_MBOX_GPA 0x2000u
#define KG_DATA_FIRST 16u
#define KG_DATA_END KG_PAGES
#define KG_PORT_DONE 0x10
#define KG_PORT_ACK 0x11

/* Guest "list writer": reads u16 count at mailbox+0, u16 value at
 * mailbox+2, and count u16 page numbers at mailbox+0x10; writes value to
 * offset 0 of each listed page; then `out KG_PORT_DONE` and starts over, so
 * every KVM_RUN runs one list. */
extern const uint8_t kvm_guest_list_code[];
extern const size_t kvm_guest_list_code_len;

/* Guest "oracle writer": mailbox u16 iter at +0, ack at +2 (guest), go at
 * +4, npages at +6, first page at +8, u32 seed at +0xc, u32 write counter at
 * +0x10 (guest). When iter changes it stores ack = iter, exits with
 * `out KG_PORT_ACK` (so a CPU dirty buffer is flushed to KVM), waits until
 * go == iter, then writes iter to offset 0 of pseudo-random pages (32-bit
 * LCG) in batches of 32, rereading iter between batches. iter = 0xffff makes
 * it `out KG_PORT_DONE` and halt. */
extern const uint8_t kvm_guest_oracle_code[];
extern const size_t kvm_guest_oracle_code_len;

/* Open a VM with the two standard slots and `code` loaded at KG_CODE_GPA
 * (no vCPU yet: ring mode must be enabled first). */
int kvm_guest_std_open(struct kvm_guest *g, const uint8_t *code, size_t len);

/* Close every fd, unmap every mapping. Safe on a half-opened guest. */
void kvm_guest_close(struct kvm_guest *g);

#endif /* TESTS_KVM_GUEST_H */
