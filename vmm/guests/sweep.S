/* SPDX-License-Identifier: MIT */
/* vmm/guests/sweep.S — increments one byte in every 4 KiB page of
 * [EBX, ECX) for ever; after every EDX passes prints "sweep XXXXXXXX\n"
 * (the pass count in hex) on COM1. */
#include "common.inc"
	.text
	.globl _start
_start:
	ENTER_PM32 pm32
pass:
	movl PARAM_START, %edi
	movl PARAM_END, %ecx
1:	incb (%edi)
	addl $4096, %edi
	cmpl %ecx, %edi
	jb 1b
	incl COUNT
	movl COUNT, %eax
	xorl %edx, %edx
	divl PARAM_EVERY
	testl %edx, %edx
	jnz pass
	movl $tag, %esi
	call print_str
	movl COUNT, %eax
	call print_hex
	movb $'\n', %al
	PUTC
	jmp pass
tag:	.asciz "sweep "
	COMMON_TAIL
