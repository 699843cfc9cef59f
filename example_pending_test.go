package deferred_test

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/deferred-go/deferred"
)

// dial and loadSettings stand for two places in a program that return
// Deferreds their producers may forget to fire.
func dial(addr string) *deferred.Deferred[string] { return deferred.New[string]() }

func loadSettings() *deferred.Deferred[map[string]string] {
	return deferred.New[map[string]string]()
}

// The pending profile counts the Deferreds that have not fired, by the
// stack that created them: with net/http/pprof, go tool pprof reads it
// like the goroutine profile. Here the program reads it itself.
func ExampleSetPendingProfileFraction() {
	prev := deferred.SetPendingProfileFraction(1) // record every new Deferred
	defer deferred.SetPendingProfileFraction(prev)

	conns := []*deferred.Deferred[string]{dial("db:5432"), dial("cache:6379")}
	settings := loadSettings()
	fmt.Println("pending from dial:", pendingFrom("dial"), "from loadSettings:", pendingFrom("loadSettings"))

	_ = conns[0].Callback("db:5432 connected")
	_ = settings.Callback(map[string]string{"mode": "fast"})
	fmt.Println("pending from dial:", pendingFrom("dial"), "from loadSettings:", pendingFrom("loadSettings"))
	_ = conns[1].Callback("cache:6379 connected")
	fmt.Println("pending from dial:", pendingFrom("dial"), "from loadSettings:", pendingFrom("loadSettings"))
	// Output:
	// pending from dial: 2 from loadSettings: 1
	// pending from dial: 1 from loadSettings: 0
	// pending from dial: 0 from loadSettings: 0
}

// pendingFrom counts the Deferreds of the pending profile created in the
// function fn of this package. It reads the profile's text form, where
// each record is "count @ pcs" and then its stack, one line
// "# pc func+offset file:line" per frame, the creating function first. (The profile's Count is
// the total for the whole program: in a test binary it may include
// Deferreds that other tests dropped and the garbage collector has not
// yet freed.)
func pendingFrom(fn string) int {
	var b bytes.Buffer
	if err := pprof.Lookup(deferred.PendingProfileName).WriteTo(&b, 1); err != nil {
		panic(err)
	}
	n, count, first := 0, 0, false
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		line := sc.Text()
		if c, _, ok := strings.Cut(line, " @ "); ok {
			count, _ = strconv.Atoi(c)
			first = true
			continue
		}
		if f := strings.Fields(line); first && len(f) == 4 && f[0] == "#" {
			if name, _, _ := strings.Cut(f[2], "+"); name == "github.com/deferred-go/deferred_test."+fn {
				n += count
			}
			first = false
		}
	}
	return n
}

// WritePending lists the tracked Deferreds that have not fired: state,
// age, stages queued and creation site, one line each. A Deferred made by
// Then says which Deferred it waits on.
func ExampleWritePending() {
	prev := deferred.SetPendingProfileFraction(1)
	defer deferred.SetPendingProfileFraction(prev)

	page := deferred.New[string]()
	page.AddCallback(func(s string) (string, error) { return strings.TrimSpace(s), nil })
	words := deferred.Then(page, func(s string) ([]string, error) { return strings.Fields(s), nil })
	held := deferred.New[int]()
	held.Pause()

	var b strings.Builder
	if err := deferred.WritePending(&b); err != nil {
		fmt.Println(err)
	}
	// Ages, addresses and file paths vary from run to run: show the rest
	// of the lines about this example's Deferreds.
	vary := regexp.MustCompile(`\S+ old|0x[0-9a-f]+| \(\S+:\d+\)`)
	for line := range strings.Lines(b.String()) {
		if strings.Contains(line, "ExampleWritePending") {
			fmt.Print(vary.ReplaceAllString(line, "…"))
		}
	}

	_ = page.Callback(" a few words ")
	_ = held.Callback(1)
	b.Reset()
	_ = deferred.WritePending(&b)
	fmt.Println("still listed after the firing:", strings.Contains(b.String(), "ExampleWritePending"))
	_ = words
	// Unordered output:
	// Deferred[string] pending, …, 2 stages, created at github.com/deferred-go/deferred_test.ExampleWritePending…
	// Deferred[[]string] waiting on Deferred[string] at … (Then), …, 0 stages, created at github.com/deferred-go/deferred_test.ExampleWritePending…
	// Deferred[int] paused, …, 0 stages, created at github.com/deferred-go/deferred_test.ExampleWritePending…
	// still listed after the firing: false
}
