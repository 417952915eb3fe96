// SPDX-License-Identifier: Apache-2.0

// Command benchdriver runs the side-by-side benchmarks of scripts/bench:
// each scenario for mqttkit and for mosquitto in the same run, alternating,
// several repetitions, then a table of medians and ratios on stdout and in
// docs/benchmarks.md. Use scripts/bench, which builds the binaries first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench"
)

// env is the state of one benchmark run.
type env struct {
	ctx     context.Context
	procs   procs
	run     string // scratch directory of this run
	binDir  string
	mqtt    string
	loadgen string

	mosquitto, mosqPub, mosqSub string

	scale float64
	reps  int // repetitions per scenario (each side)

	rows      []*bench.Row
	micro     []microResult
	microNote string
	commands  []cmdGroup
	verbose   bool
	supports  map[string]bool
}

// cmdGroup is the command lines one scenario ran, for the doc.
type cmdGroup struct {
	scenario string
	lines    []string
}

// scenario is one runnable benchmark.
type scenario struct {
	name string
	desc string
	run  func(e *env) error
}

var scenarios = []scenario{
	{"oneshot", "1: one-shot `pub -m` process wall time", (*env).oneShot},
	{"publ", "2: `pub -l` 200,000 lines at QoS 0, 1, 2", (*env).pubLines},
	{"sub", "3: `sub` receiving and printing 200,000 messages", (*env).subPrint},
	{"fanin", "4: broker fan-in, 4 publishers -> 1 subscriber, QoS 0 and 1", (*env).fanIn},
	{"fanout", "5: broker fan-out, 1 publisher -> 100 subscribers, QoS 0 and 1", (*env).fanOut},
	{"latency", "6: end-to-end latency at 1,000 msg/s: p50, p99, max", (*env).latency},
	{"idle", "7: 10,000 idle connections: broker resident memory", (*env).idle},
	{"startup", "8: broker start-up time to the first CONNACK", (*env).startup},
	{"sensor", "9: simulate-sensor fleet, 1,000 sensors x 10 msg/s", (*env).sensorFleet},
	{"micro", "Go micro-benchmarks: go test -bench ./pkg/...", (*env).microBench},
}

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	binDir := flag.String("bin", ".bench/bin", "directory holding the built mqtt and loadgen binaries")
	docPath := flag.String("doc", "docs/benchmarks.md", "results document to update")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: scripts/bench [scenario...]\n\nscenarios (default: all):\n")
		for _, s := range scenarios {
			fmt.Fprintf(os.Stderr, "  %-8s %s\n", s.name, s.desc)
		}
		fmt.Fprintf(os.Stderr, `
environment:
  BENCH_SCALE=0.05   scale message and connection counts (default 1)
  BENCH_REPS=N       repetitions per scenario and side (default 3; one-shot and start-up use more)
  BENCH_DOC=1|0      write docs/benchmarks.md (default: only for a full run at scale 1)
  BENCH_NOTE=text    a note for the doc (e.g. "machine shared with 7 developers")
  BENCH_KEEP=1       keep the scratch directory (configs, logs, outputs)
  BENCH_MICRO_TIME   -benchtime for the micro-benchmarks (default 300ms)
`)
	}
	flag.Parse()

	selected, err := selectScenarios(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		flag.Usage()
		return 2
	}

	e := &env{binDir: *binDir, scale: 1, reps: 3, supports: map[string]bool{}}
	if s := os.Getenv("BENCH_SCALE"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 || f > 10 {
			fmt.Fprintf(os.Stderr, "bench: BENCH_SCALE=%q: want a number in (0, 10]\n", s)
			return 2
		}
		e.scale = f
	}
	if s := os.Getenv("BENCH_REPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 50 {
			fmt.Fprintf(os.Stderr, "bench: BENCH_REPS=%q: want 1..50\n", s)
			return 2
		}
		e.reps = n
	}
	if err := e.findTools(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 3
	}
	raiseFileLimit()

	// Every run ends by itself: a hard limit well above the expected few
	// minutes, and Ctrl-C or SIGTERM stop the brokers before exiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	e.ctx = ctx
	defer e.procs.killAll()

	e.run, err = os.MkdirTemp("", "mqttkit-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if os.Getenv("BENCH_KEEP") == "1" {
		fmt.Printf("scratch directory kept: %s\n", e.run)
	} else {
		defer os.RemoveAll(e.run)
	}

	info := e.machineInfo()
	fmt.Print(info.text())
	start := time.Now()
	failed := false
	for _, s := range selected {
		if ctx.Err() != nil {
			break
		}
		fmt.Printf("\n== %s: %s\n", s.name, s.desc)
		t0 := time.Now()
		if err := s.run(e); err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.name, err)
		}
		fmt.Printf("   (%s took %.1f s)\n", s.name, time.Since(t0).Seconds())
	}
	info.elapsed = time.Since(start)
	info.loadEnd = loadAvg()
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bench: interrupted:", context.Cause(ctx))
		return 130
	}

	verdicts := e.verdicts()
	fmt.Printf("\n== results (medians; ratio = ours/mosquitto)\n\n%s", bench.Text(e.rows))
	if len(e.micro) > 0 {
		fmt.Printf("\n== micro-benchmarks\n\n%s", microText(e.micro))
	}
	if len(verdicts) > 0 {
		fmt.Printf("\n== targets\n\n%s", bench.TargetsText(verdicts))
	}
	fmt.Printf("\ntotal %.1f s\n", info.elapsed.Seconds())

	full := len(flag.Args()) == 0 || slices.Contains(flag.Args(), "all")
	writeDoc := full && e.scale == 1
	switch os.Getenv("BENCH_DOC") {
	case "1":
		writeDoc = true
	case "0":
		writeDoc = false
	}
	if writeDoc {
		if err := bench.UpdateDoc(*docPath, e.docSection(info, verdicts)); err != nil {
			fmt.Fprintln(os.Stderr, "bench: write doc:", err)
			return 1
		}
		fmt.Printf("wrote %s\n", *docPath)
	} else {
		fmt.Printf("%s not updated (partial run or BENCH_SCALE != 1; BENCH_DOC=1 forces it)\n", *docPath)
	}
	if failed {
		return 1
	}
	return 0
}

func selectScenarios(args []string) ([]scenario, error) {
	if len(args) == 0 || slices.Contains(args, "all") {
		return scenarios, nil
	}
	var out []scenario
	for _, a := range args {
		i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == a })
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q", a)
		}
		out = append(out, scenarios[i])
	}
	return out, nil
}

// findTools locates our binaries and the reference tools.
func (e *env) findTools() error {
	e.mqtt = filepath.Join(e.binDir, "mqtt")
	e.loadgen = filepath.Join(e.binDir, "loadgen")
	for _, p := range []string{e.mqtt, e.loadgen} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing: run scripts/bench, which builds it", p)
		}
	}
	var missing []string
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p
			}
		}
		missing = append(missing, name)
		return ""
	}
	e.mosquitto, e.mosqPub, e.mosqSub = find("mosquitto"), find("mosquitto_pub"), find("mosquitto_sub")
	if len(missing) > 0 {
		return fmt.Errorf("the reference tools are missing (%s). Install them, e.g. on Debian or Ubuntu:\n\n    sudo apt-get install mosquitto mosquitto-clients\n\n(on macOS: brew install mosquitto), then run scripts/bench again", strings.Join(missing, ", "))
	}
	return nil
}

// raiseFileLimit lifts the soft open-file limit to the hard one, for the
// idle-connection scenario; children inherit it.
func raiseFileLimit() {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

func fileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// n scales a message or connection count, keeping at least lo.
func (e *env) n(full, lo int) int {
	return max(lo, int(math.Round(float64(full)*e.scale)))
}

// timeout scales a per-run time limit, keeping at least 10 s.
func (e *env) timeout(full time.Duration) time.Duration {
	return max(10*time.Second, time.Duration(float64(full)*e.scale))
}

// showCommands prints command lines for a scenario and keeps them for the doc.
func (e *env) showCommands(scenario string, lines ...string) {
	for _, l := range lines {
		fmt.Printf("   $ %s\n", l)
	}
	for i := range e.commands {
		if e.commands[i].scenario == scenario {
			e.commands[i].lines = append(e.commands[i].lines, lines...)
			return
		}
	}
	e.commands = append(e.commands, cmdGroup{scenario: scenario, lines: lines})
}

// ourSupport reports whether our mqtt accepts the given arguments (a
// subcommand and flags, with values where needed), by asking for help
// with them: a flag that has not landed yet is a parse error.
func (e *env) ourSupport(args ...string) bool {
	key := strings.Join(args, " ")
	if v, ok := e.supports[key]; ok {
		return v
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	c := e.command(ctx, append(append([]string{e.mqtt}, args...), "--help")...)
	err := c.Run()
	e.supports[key] = err == nil
	return err == nil
}

// repeat runs one repetition after another, each running both sides in
// alternating order (ours first on even repetitions), for e.reps
// repetitions or until budget is spent, whichever comes first; at least
// one repetition always runs.
func (e *env) repeat(reps int, budget time.Duration, f func(rep int, ours bool)) {
	start := time.Now()
	for rep := 0; rep < reps; rep++ {
		if e.ctx.Err() != nil {
			return
		}
		if rep > 0 && time.Since(start) > budget {
			fmt.Printf("   time budget %s spent after %d repetitions\n", budget, rep)
			return
		}
		order := []bool{true, false}
		if rep%2 == 1 {
			order = []bool{false, true}
		}
		for _, ours := range order {
			f(rep, ours)
		}
	}
}

// note adds a note to a row once.
func note(r *bench.Row, s string) {
	if strings.Contains(r.Note, s) {
		return
	}
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += s
}

func side(ours bool) string {
	if ours {
		return "ours"
	}
	return "mosquitto"
}

func (e *env) addRow(r *bench.Row) *bench.Row {
	e.rows = append(e.rows, r)
	return r
}

// sample records one measurement for a side.
func sample(r *bench.Row, ours bool, v float64) {
	if ours {
		r.Ours = append(r.Ours, v)
	} else {
		r.Ref = append(r.Ref, v)
	}
}

func count(r *bench.Row, ours bool, c bench.Count) {
	if ours {
		bench.AddCount(&r.OursCount, c)
	} else {
		bench.AddCount(&r.RefCount, c)
	}
}

// fail records a failed run on the row and prints it.
func fail(r *bench.Row, ours bool, err error) {
	msg := fmt.Sprintf("%s: %v", side(ours), err)
	fmt.Fprintf(os.Stderr, "   ! %s: %s\n", r.Scenario, msg)
	first, _, _ := strings.Cut(msg, "\n")
	note(r, first)
}

// errTimedOut marks a run that hit its time limit.
var errTimedOut = errors.New("timed out")

// machine describes where a run happened.
type machine struct {
	date, cpu, goVersion, mosqVersion, mqttVersion, commit, kernel string
	cores                                                          int
	loadStart, loadEnd                                             string
	scale                                                          float64
	reps                                                           int
	fileLimit                                                      uint64
	note                                                           string
	elapsed                                                        time.Duration
}

func (e *env) machineInfo() *machine {
	m := &machine{
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		cores:     runtime.NumCPU(),
		goVersion: runtime.Version(),
		loadStart: loadAvg(),
		scale:     e.scale,
		reps:      e.reps,
		fileLimit: fileLimit(),
		note:      os.Getenv("BENCH_NOTE"),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	out := func(args ...string) string {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		b, _ := e.command(ctx, args...).CombinedOutput()
		return strings.TrimSpace(string(b))
	}
	m.mosqVersion = firstLine(out(e.mosquitto, "-h"))
	m.mqttVersion = firstLine(out(e.mqtt, "--version"))
	m.commit = firstLine(out("git", "describe", "--always", "--dirty"))
	return m
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func (m *machine) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "date:       %s\n", m.date)
	fmt.Fprintf(&b, "machine:    %d cores, %s, Linux %s, load average %s\n", m.cores, m.cpu, m.kernel, m.loadStart)
	fmt.Fprintf(&b, "go:         %s\n", m.goVersion)
	fmt.Fprintf(&b, "mosquitto:  %s\n", m.mosqVersion)
	fmt.Fprintf(&b, "mqtt:       %s (%s)\n", m.mqttVersion, m.commit)
	fmt.Fprintf(&b, "scale:      %g, up to %d repetitions per side, open-file limit %d\n", m.scale, m.reps, m.fileLimit)
	if m.note != "" {
		fmt.Fprintf(&b, "note:       %s\n", m.note)
	}
	return b.String()
}

// docSection renders the generated part of docs/benchmarks.md.
func (e *env) docSection(m *machine, vs []bench.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Results\n\n")
	fmt.Fprintf(&b, "- Date: %s; run took %.0f s\n", m.date, m.elapsed.Seconds())
	fmt.Fprintf(&b, "- Machine: %d cores (%s), Linux %s; load average %s at the start, %s at the end\n", m.cores, m.cpu, m.kernel, m.loadStart, m.loadEnd)
	fmt.Fprintf(&b, "- Go: %s; mosquitto: %s; mqtt: %s (%s)\n", m.goVersion, m.mosqVersion, m.mqttVersion, m.commit)
	fmt.Fprintf(&b, "- Scale %g, up to %d repetitions per side (alternating ours and mosquitto), medians shown\n", m.scale, m.reps)
	if m.note != "" {
		fmt.Fprintf(&b, "- Note: %s\n", m.note)
	}
	fmt.Fprintf(&b, "\n%s", bench.Markdown(e.rows))
	if len(vs) > 0 {
		fmt.Fprintf(&b, "\n### Targets from the issues\n\n%s", bench.TargetsMarkdown(vs))
	}
	if len(e.micro) > 0 || e.microNote != "" {
		fmt.Fprintf(&b, "\n### Micro-benchmarks\n\n")
		if e.microNote != "" {
			fmt.Fprintf(&b, "%s\n\n", e.microNote)
		}
		b.WriteString(microMarkdown(e.micro))
	}
	if len(e.commands) > 0 {
		fmt.Fprintf(&b, "\n### Command lines of this run\n\n")
		fmt.Fprintf(&b, "`$RUN` is the run's scratch directory (`BENCH_KEEP=1` keeps it); the ports were picked at random for this run. Start the broker line first (it ends in `&`), then the others.\n\n```sh\n")
		for _, g := range e.commands {
			fmt.Fprintf(&b, "# %s\n", g.scenario)
			for _, l := range g.lines {
				b.WriteString(e.docLine(l) + "\n")
			}
		}
		b.WriteString("```\n")
	}
	return b.String()
}

// docLine makes a printed command line portable: scratch paths become
// $RUN, our binaries their repository-relative path.
func (e *env) docLine(l string) string {
	l = strings.ReplaceAll(l, e.run, "$RUN")
	if abs, err := filepath.Abs(e.binDir); err == nil {
		l = strings.ReplaceAll(l, abs, ".bench/bin")
	}
	return l
}
