/* SPDX-License-Identifier: MIT */
/* vmm/guests.S — the guests' boot sectors (built from vmm/guests/*.S by the
 * Makefile) linked into precopy-vmm. */
	.section .rodata
	.balign 16
	.globl vmm_guest_sweep, vmm_guest_idle, vmm_guest_random
vmm_guest_sweep:
	.incbin "sweep.bin"
vmm_guest_idle:
	.incbin "idle.bin"
vmm_guest_random:
	.incbin "random.bin"
	.section .note.GNU-stack,"",@progbits
