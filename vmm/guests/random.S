/* SPDX-License-Identifier: MIT */
/* vmm/guests/random.S — xorshift32 (seed ESI) picks pages of [EBX, ECX)
 * and increments the first byte of each; after every EDX batches of 65536
 * writes prints "random XXXXXXXX\n" (the batch count in hex) on COM1. */
#include "common.inc"
	.text
	.globl _start
_start:
	ENTER_PM32 pm32
	movl PARAM_SEED, %eax
	orl $1, %eax
	movl %eax, %ebp			/* xorshift state, never 0 */
batch:
	movl $65536, %ecx
1:	movl %ebp, %eax			/* x ^= x << 13; x ^= x >> 17; x ^= x << 5 */
	shll $13, %eax
	xorl %eax, %ebp
	movl %ebp, %eax
	shrl $17, %eax
	xorl %eax, %ebp
	movl %ebp, %eax
	shll $5, %eax
	xorl %eax, %ebp
	movl PARAM_END, %eax		/* page = (x * pages) >> 32 */
	subl PARAM_START, %eax
	shrl $12, %eax
	mull %ebp
	shll $12, %edx
	addl PARAM_START, %edx
	incb (%edx)
	loop 1b
	incl COUNT
	movl COUNT, %eax
	xorl %edx, %edx
	divl PARAM_EVERY
	testl %edx, %edx
	jnz batch
	movl $tag, %esi
	call print_str
	movl COUNT, %eax
	call print_hex
	movb $'\n', %al
	PUTC
	jmp batch
tag:	.asciz "random "
	COMMON_TAIL
