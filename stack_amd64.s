//go:build !deferred_nofp

#include "textflag.h"

// func fpCallers(buf []uintptr) int
//
// fpCallers fills buf with the return addresses found by following the
// frame-pointer chain from its caller's frame, and returns how many it
// stored. It has no frame of its own, so BP is still the caller's. It stops
// at a nil frame pointer (a goroutine's first frame) and, defensively, at
// one that does not lead to a higher address less than 1 MiB away, as the
// next frame of the same stack must.
TEXT ·fpCallers(SB), NOSPLIT, $0-32
	MOVQ buf_base+0(FP), DI
	MOVQ buf_len+8(FP), CX
	MOVQ BP, SI
	XORQ AX, AX

loop:
	CMPQ AX, CX
	JGE  done
	TESTQ SI, SI
	JEQ  done
	MOVQ 8(SI), DX
	MOVQ DX, (DI)(AX*8)
	INCQ AX
	MOVQ 0(SI), R8
	CMPQ R8, SI
	JLS  done
	MOVQ R8, R9
	SUBQ SI, R9
	CMPQ R9, $0x100000
	JHI  done
	MOVQ R8, SI
	JMP  loop

done:
	MOVQ AX, ret+24(FP)
	RET
