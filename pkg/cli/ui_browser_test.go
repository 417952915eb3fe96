// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/internal/testutil"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
	"github.com/mqttkit/mqttkit/pkg/ui"
)

// browserWait bounds every wait for the page: generous, because two cores
// are shared by many test runs. Nothing here is timed; it only keeps a
// broken page from hanging the suite.
const browserWait = 60 * time.Second

// findChromium returns Debian's chromium, skipping the test without it, or
// failing it under MQTT_INTEROP=require (CI installs it).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if st, err := os.Stat("/usr/bin/chromium"); err == nil && !st.IsDir() {
		return "/usr/bin/chromium"
	}
	if os.Getenv("MQTT_INTEROP") == "require" {
		t.Fatal("chromium is not installed and MQTT_INTEROP=require: apt-get install chromium")
	}
	t.Skip("chromium not installed: skipping the dashboard's browser tests (apt-get install chromium)")
	return ""
}

// startBrowser starts one headless Chromium for all subtests of t; each
// subtest opens its own tab with newTab.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		// A tab in the background still runs its timers at full speed.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(func(string, ...any) {}))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not have a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens a tab on url in the shared browser.
func newTab(t *testing.T, browser context.Context, url string) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(tab, 5*browserWait)
	t.Cleanup(cancelT)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url)))
	return ctx
}

// waitJS waits until the JavaScript expression is truthy and returns its value.
func waitJS[T any](t *testing.T, ctx context.Context, what, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("state").textContent + " | " + document.getElementById("notices").textContent`))
		t.Fatalf("waiting for %s (%s): %v; page state: %s", what, expr, err, state)
	}
	return v
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

// jsString quotes s for JavaScript.
func jsString(s string) string { return strconv.Quote(s) }

// topicRow is the expression for a topic's row in the tree.
func topicRow(topic string) string {
	return `[...document.querySelectorAll("#tree li.has-topic")].find(li => li.dataset.topic === ` + jsString(topic) + `)`
}

// chartOf is the expression for a topic's chart in the Charts panel.
func chartOf(topic string) string {
	return `[...document.querySelectorAll("#charts figure.chart")].find(f => f.dataset.topic === ` + jsString(topic) + `)`
}

// runCommand runs an mqtt command (such as simulate-sensor) against the
// broker in env until the test ends.
func runCommand(t *testing.T, env map[string]string, args ...string) {
	t.Helper()
	io, _, _, _ := iostreams.Test()
	io.Out, io.ErrOut = &testutil.Buffer{}, &testutil.Buffer{}
	io.Getenv = func(k string) string { return env[k] }
	d := newDeps(io)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, d, append([]string{"mqtt"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestUIBrowser(t *testing.T) {
	browser := startBrowser(t)

	t.Run("topics appear and the chart moves", func(t *testing.T) {
		b := testbroker.Start(t)
		env := brokerEnv(b)
		r := startUI(t, env, nil)
		tab := newTab(t, browser, r.url)
		waitJS[bool](t, tab, "connected", `document.getElementById("state").dataset.status === "connected"`)
		require.NoError(t, b.WaitSubscriber("sensor/temp", browserWait))
		runCommand(t, env, "simulate-sensor", "--interval", "100ms", "--seed", "7", "--model", "sine")

		waitJS[bool](t, tab, "the topic in the tree", `!!`+topicRow("sensor/temp"))
		preview := waitJS[string](t, tab, "the payload in the tree", topicRow("sensor/temp")+`.querySelector(".preview").textContent`)
		require.Regexp(t, `^Temperature: -?\d+\.\d+°C$`, preview)
		require.Equal(t, "sensor", evalJS[string](t, tab, `document.querySelector("#tree > li").dataset.name`), "the tree has a folder per level")

		first := waitJS[int](t, tab, "a chart with points", `(`+chartOf("sensor/temp")+`||{dataset:{}}).dataset.points|0`)
		last0 := evalJS[string](t, tab, chartOf("sensor/temp")+`.dataset.last`)
		// The chart moves: more points and a new last value, as the sensor publishes.
		waitJS[bool](t, tab, "the chart to move", fmt.Sprintf(`(c => (c.dataset.points|0) >= %d && c.dataset.last !== %s)(%s)`, first+3, jsString(last0), chartOf("sensor/temp")))
		caption := evalJS[string](t, tab, chartOf("sensor/temp")+`.querySelector("figcaption").textContent`)
		require.Regexp(t, `last -?[\d.]+min -?[\d.]+max -?[\d.]+`, caption)
		// Something was drawn on the canvas.
		drawn := evalJS[bool](t, tab, `(c => { const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false })(`+chartOf("sensor/temp")+`.querySelector("canvas"))`)
		require.True(t, drawn, "the chart is drawn")
		// Counts, rate and age are shown.
		waitJS[bool](t, tab, "a rate", `/\/s$/.test(`+topicRow("sensor/temp")+`.querySelector(".rate").textContent)`)
		require.Regexp(t, `^\d+ msg$`, evalJS[string](t, tab, topicRow("sensor/temp")+`.querySelector(".count").textContent`))
		require.Regexp(t, `^\d+s ago$`, evalJS[string](t, tab, topicRow("sensor/temp")+`.querySelector(".age").textContent`))

		// The detail of a selected topic, and JSON indented.
		require.NoError(t, b.Publish("home/kitchen", []byte(`{"temperature":21.5,"humidity":40}`), true, 0))
		waitJS[bool](t, tab, "the JSON topic", `!!`+topicRow("home/kitchen"))
		require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.JSPath(topicRow("home/kitchen")+`.querySelector(".name")`))))
		payload := waitJS[string](t, tab, "the detail", `!document.getElementById("detail").hidden && document.getElementById("detail-payload").textContent`)
		require.Equal(t, "{\n  \"temperature\": 21.5,\n  \"humidity\": 40\n}", payload)
		require.Contains(t, evalJS[string](t, tab, `document.getElementById("detail-chart").querySelector("figcaption").textContent`), "temperature", "the JSON field charted")
		require.Equal(t, "#home/kitchen", evalJS[string](t, tab, `location.hash`), "the address names the selected topic")
		deep := newTab(t, browser, r.url+"#sensor/temp")
		waitJS[bool](t, deep, "the topic named in the address", `!document.getElementById("detail").hidden && document.getElementById("detail-topic").textContent === "sensor/temp"`)

		// The log: pause holds lines back, the filter hides lines.
		require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.ID("log-pause"))))
		// Once the page says paused, lines already received are listed
		// and new ones are held.
		rows := waitJS[int](t, tab, "paused", `/^paused/.test(document.getElementById("log-status").textContent) && document.querySelector("#log tbody").rows.length`)
		waitJS[bool](t, tab, "lines held while paused", `/paused, [1-9]\d* new/.test(document.getElementById("log-status").textContent)`)
		require.Equal(t, rows, evalJS[int](t, tab, `document.querySelector("#log tbody").rows.length`), "no line added while paused")
		require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.ID("log-pause"))))
		waitJS[bool](t, tab, "the held lines shown", fmt.Sprintf(`document.querySelector("#log tbody").rows.length > %d`, rows))
		require.NoError(t, chromedp.Do(tab, chromedp.SendKeys(chromedp.ID("log-filter"), "kitchen")))
		waitJS[bool](t, tab, "the filter applied", `(() => { const vis = [...document.querySelectorAll("#log tbody tr")].filter(tr => !tr.classList.contains("hidden")); return vis.length >= 1 && vis.every(tr => tr.dataset.topic === "home/kitchen") })()`)
	})

	t.Run("the publish form reaches mosquitto_sub", func(t *testing.T) {
		subBin := interop.Require(t, "mosquitto_sub")
		m := interop.StartMosquitto(t)
		r := startUI(t, map[string]string{"MQTT_HOST": "127.0.0.1", "MQTT_PORT": strconv.Itoa(m.Port)}, nil)
		tab := newTab(t, browser, r.url)
		waitJS[bool](t, tab, "connected", `document.getElementById("state").dataset.status === "connected"`)
		require.NoError(t, chromedp.Do(tab,
			chromedp.SendKeys(chromedp.ID("pub-topic"), "from/page"),
			chromedp.SendKeys(chromedp.ID("pub-payload"), "hello from the page"),
			chromedp.SetValue(chromedp.ID("pub-qos"), "1"),
			chromedp.Click(chromedp.ID("pub-retain")),
			chromedp.Click(chromedp.ID("pub-send")),
		))
		res := waitJS[string](t, tab, "the publish result", `document.getElementById("pub-result").className && document.getElementById("pub-result").textContent`)
		require.Contains(t, res, "published to from/page")
		// Retained, so mosquitto_sub gets it whenever it subscribes.
		ctx, cancel := context.WithTimeout(context.Background(), browserWait)
		defer cancel()
		out, err := exec.CommandContext(ctx, subBin, "-p", strconv.Itoa(m.Port), "-t", "from/page", "-q", "1", "-C", "1", "-W", "30", "-F", "%r %q %t %p").CombinedOutput()
		require.NoError(t, err, string(out))
		require.Equal(t, "1 1 from/page hello from the page\n", string(out))
		// The dashboard sees its own message too.
		waitJS[bool](t, tab, "the published topic in the tree", `!!`+topicRow("from/page"))
	})

	t.Run("the page survives a broker restart", func(t *testing.T) {
		b, err := testbroker.New()
		require.NoError(t, err)
		addr := b.Addr()
		r := startUI(t, brokerEnv(b), nil)
		tab := newTab(t, browser, r.url)
		waitJS[bool](t, tab, "connected", `document.getElementById("state").dataset.status === "connected"`)
		require.NoError(t, b.WaitSubscriber("before", browserWait))
		require.NoError(t, b.Publish("before", []byte("1"), false, 0))
		waitJS[bool](t, tab, "a topic", `!!`+topicRow("before"))

		// The page records every state it shows.
		evalJS[bool](t, tab, `(() => { window.seen = []; new MutationObserver(() => window.seen.push(document.getElementById("state").dataset.status)).observe(document.getElementById("state"), {attributes: true}); return true })()`)
		require.NoError(t, b.Close())
		detail := waitJS[string](t, tab, "reconnecting", `document.getElementById("state").dataset.status === "reconnecting" && document.getElementById("state").textContent`)
		require.Contains(t, detail, "reconnecting: ")
		b2, err := testbroker.NewAt(addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = b2.Close() })
		waitJS[bool](t, tab, "connected again", `document.getElementById("state").dataset.status === "connected"`)
		seen := evalJS[[]string](t, tab, `window.seen`)
		require.Contains(t, seen, "reconnecting")
		require.Equal(t, "connected", seen[len(seen)-1])

		// Still live: new messages arrive, old topics stay.
		require.NoError(t, b2.WaitSubscriber("after", browserWait))
		require.NoError(t, b2.Publish("after", []byte("2"), false, 0))
		waitJS[bool](t, tab, "a topic after the restart", `!!`+topicRow("after"))
		require.True(t, evalJS[bool](t, tab, `!!`+topicRow("before")))
	})

	t.Run("bad input keeps the page responsive and memory bounded", func(t *testing.T) {
		b := testbroker.Start(t)
		r := startUI(t, brokerEnv(b), nil)
		tab := newTab(t, browser, r.url)
		waitJS[bool](t, tab, "connected", `document.getElementById("state").dataset.status === "connected"`)
		require.NoError(t, b.WaitSubscriber("x", browserWait))
		heapBefore := heapInUse()

		// A 10 MB payload.
		big := make([]byte, 10<<20)
		for i := range big {
			big[i] = byte(i)
		}
		require.NoError(t, b.Publish("big/binary", big, false, 0))
		require.NoError(t, b.Publish("big/text", []byte(strings.Repeat("é", 5<<20)), false, 0))
		waitJS[bool](t, tab, "the big topics", `!!`+topicRow("big/binary")+` && !!`+topicRow("big/text"))
		require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.JSPath(topicRow("big/binary")+`.querySelector(".name")`))))
		cut := waitJS[string](t, tab, "the cut notice", `!document.getElementById("detail-cut").hidden && document.getElementById("detail-cut").textContent`)
		require.Contains(t, cut, "Payload of 10.0 MiB: only the first 4.0 KiB of its hex dump are kept.")
		require.LessOrEqual(t, evalJS[int](t, tab, `document.getElementById("detail-payload").textContent.length`), 4096)
		require.Contains(t, evalJS[string](t, tab, `document.getElementById("detail-payload").textContent`), "00000000  00 01 02 03")
		waitJS[bool](t, tab, "the payload notice", `!!document.querySelector('#notices [data-cap="payload"]')`)

		// Topics that are not valid UTF-8 (the broker refuses them, so they
		// go straight to the hub, as a lax broker would deliver them).
		r.hub.Add(&client.Message{Topic: "bad/\xff\xfe", Payload: []byte("1")})
		r.hub.Add(&client.Message{Topic: "bad/\xc3", Payload: []byte("2")})
		waitJS[bool](t, tab, "repaired names", `document.querySelectorAll('#tree li.has-topic[data-topic="bad/\uFFFD"]').length === 2`)
		waitJS[bool](t, tab, "the UTF-8 notice", `!!document.querySelector('#notices [data-cap="utf8"]')`)

		// 10,000 topics: 1000 are tracked, the page says so, the log stays bounded.
		const n = 10000
		for i := range n {
			require.NoError(t, b.Publish(fmt.Sprintf("flood/%d/%d", i/100, i), []byte(strconv.Itoa(i)), false, 0))
		}
		notice := waitJS[string](t, tab, "the topic limit notice", `(document.querySelector('#notices [data-cap="topics"]')||{}).textContent`)
		require.Contains(t, notice, "Topic limit reached: 1000 topics are tracked")
		waitJS[bool](t, tab, "all messages counted", fmt.Sprintf(`window.mqttui.caps && window.mqttui.caps.messages >= %d`, n+4))
		require.Equal(t, ui.DefaultLimits().Topics, evalJS[int](t, tab, `document.querySelectorAll("#tree li.has-topic").length`))
		require.LessOrEqual(t, evalJS[int](t, tab, `document.querySelector("#log tbody").rows.length`), ui.DefaultLimits().Log)

		// Still responsive: it reacts to a click and to new messages.
		require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.JSPath(topicRow("bad/\uFFFD")+`.querySelector(".name")`))))
		waitJS[bool](t, tab, "the detail of a repaired topic", `document.getElementById("detail-topic").textContent === "bad/\uFFFD"`)
		require.NoError(t, b.Publish("big/binary", []byte("small now"), false, 0))
		waitJS[bool](t, tab, "a later message", `document.getElementById("detail-topic").textContent === "bad/\uFFFD" && `+topicRow("big/binary")+`.querySelector(".preview").textContent === "small now"`)
		jsHeap := evalJS[float64](t, tab, `performance.memory ? performance.memory.usedJSHeapSize : 0`)
		require.Less(t, jsHeap, float64(200<<20), "the page's heap stays small")

		// The process keeps what the limits allow, not what was sent.
		require.Less(t, heapInUse()-heapBefore, int64(64<<20), "heap growth after 10 MB payloads and 10,000 topics")
	})
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
