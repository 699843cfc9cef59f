//go:build !deferred_nofp

#include "textflag.h"

// func fpCallers(buf []uintptr) int
//
// fpCallers fills buf with the return addresses found by following the
// frame-pointer chain from its caller's frame, and returns how many it
// stored. It has no frame of its own, so BP is still the caller's. It stops
// at a nil frame pointer (a goroutine's first frame) or a full buf. A frame
// pointer that does not lead to a higher address less than 1 MiB away (a
// frame of 1 MiB or more, or a chain it cannot trust) makes it stop unsure:
// it then returns minus the count, and the caller asks runtime.Callers.
TEXT ·fpCallers(SB), NOSPLIT, $0-32
	MOVQ buf_base+0(FP), DI
	MOVQ buf_len+8(FP), CX
	MOVQ BP, SI
	XORQ AX, AX
	TESTQ SI, SI
	JEQ  done

	// One frame a turn, SI its frame pointer, never nil here: store the
	// return address, then go on to the next frame pointer R8 if R8-SI is
	// in [1, 1 MiB]: one unsigned compare of R8-SI-1 checks both bounds,
	// and lets a nil R8 through to stop, which tells the two apart.
loop:
	CMPQ AX, CX
	JGE  done
	MOVQ 8(SI), DX
	MOVQ DX, (DI)(AX*8)
	INCQ AX
	MOVQ 0(SI), R8
	LEAQ -1(R8), R9
	SUBQ SI, R9
	CMPQ R9, $0xfffff
	JHI  stop
	MOVQ R8, SI
	JMP  loop

stop:
	TESTQ R8, R8
	JEQ  done // the goroutine's first frame
	NEGQ AX

done:
	MOVQ AX, ret+24(FP)
	RET
