/* SPDX-License-Identifier: MIT */
/* vmm/guests/idle.S — halts for ever; the VMM wakes it every 10 ms (its
 * only "timer"); after every EDX wake-ups prints "idle XXXXXXXX\n" (the
 * count in hex) on COM1. Writes one page (its counter's) per wake-up. */
#include "common.inc"
	.text
	.globl _start
_start:
	ENTER_PM32 pm32
tick:
	hlt
	incl COUNT
	movl COUNT, %eax
	xorl %edx, %edx
	divl PARAM_EVERY
	testl %edx, %edx
	jnz tick
	movl $tag, %esi
	call print_str
	movl COUNT, %eax
	call print_hex
	movb $'\n', %al
	PUTC
	jmp tick
tag:	.asciz "idle "
	COMMON_TAIL
