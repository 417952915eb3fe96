// SPDX-License-Identifier: Apache-2.0

package ui

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/client"
)

func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		name, payload, prefer string
		want                  float64
		field                 string
		ok                    bool
	}{
		{name: "plain", payload: "23.4", want: 23.4, ok: true},
		{name: "plain spaces", payload: " -1e3\n", want: -1000, ok: true},
		{name: "integer", payload: "42", want: 42, ok: true},
		{name: "course text", payload: "Temperature: 23.4°C", want: 23.4, ok: true},
		{name: "course sent", payload: "Sent: 23.41°C", want: 23.41, ok: true},
		{name: "negative in text", payload: "temp -4.5 C", want: -4.5, ok: true},
		{name: "unit glued after", payload: "23C", want: 23, ok: true},
		{name: "digits in a word skipped", payload: "sensor3: 21.5", want: 21.5, ok: true},
		{name: "version skipped", payload: "v1.2.3 up", ok: false},
		{name: "address skipped", payload: "from 10.0.0.1", ok: false},
		{name: "address then number", payload: "10.0.0.1 says 7", want: 7, ok: true},
		{name: "no number", payload: "open", ok: false},
		{name: "NaN", payload: "NaN", ok: false},
		{name: "Inf", payload: "Inf", ok: false},
		{name: "hex float", payload: "0x1p-2", ok: false},
		{name: "huge", payload: "1e999", ok: false},
		{name: "empty", payload: "", ok: false},
		{name: "json number", payload: "[21]", want: 21, field: "0", ok: true},
		{name: "json first numeric field", payload: `{"sensor":"1","value":23.41,"unit":"C","seq":1}`, want: 23.41, field: "value", ok: true},
		{name: "json preferred field", payload: `{"a":1,"b":{"c":2}}`, prefer: "b.c", want: 2, field: "b.c", ok: true},
		{name: "json preferred missing", payload: `{"a":1,"b":{"d":2}}`, prefer: "b.c", want: 1, field: "a", ok: true},
		{name: "json nested", payload: `{"meta":{"id":"x"},"data":[{"t":5}]}`, want: 5, field: "data.0.t", ok: true},
		{name: "json string number", payload: `"12.5"`, want: 12.5, ok: true},
		{name: "json no number", payload: `{"a":"b","c":true}`, ok: false},
		{name: "invalid json is text", payload: `{"a": 1`, want: 1, ok: true},
		{name: "long text not charted", payload: strings.Repeat("word ", 60) + "5", ok: false},
		{name: "binary", payload: "\xff\xfe1", ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, field, ok := Number([]byte(tc.payload), tc.prefer)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.InDelta(t, tc.want, v, 1e-9)
				require.Equal(t, tc.field, field)
			}
		})
	}
}

func TestRender(t *testing.T) {
	t.Run("text", func(t *testing.T) {
		r := Render([]byte("Temperature: 23.4°C"), 100)
		require.Equal(t, Rendered{Kind: KindText, Text: "Temperature: 23.4°C"}, r)
	})
	t.Run("empty", func(t *testing.T) {
		require.Equal(t, KindEmpty, Render(nil, 100).Kind)
	})
	t.Run("json indented", func(t *testing.T) {
		r := Render([]byte(`{"a":[1,2]}`), 100)
		require.Equal(t, KindJSON, r.Kind)
		require.Equal(t, "{\n  \"a\": [\n    1,\n    2\n  ]\n}", r.Text)
	})
	t.Run("json cut", func(t *testing.T) {
		r := Render([]byte(`{"a":"`+strings.Repeat("x", 200)+`"}`), 50)
		require.Equal(t, KindJSON, r.Kind)
		require.True(t, r.Truncated)
		require.LessOrEqual(t, len(r.Text), 50)
	})
	t.Run("binary as hex", func(t *testing.T) {
		r := Render([]byte{0, 1, 2, 'A', 0xff}, 1000)
		require.Equal(t, KindBinary, r.Kind)
		require.Equal(t, "00000000  00 01 02 41 ff                                    |...A.|\n", r.Text)
	})
	t.Run("big binary cut", func(t *testing.T) {
		r := Render(bytes.Repeat([]byte{0}, 10<<20), 4096)
		require.Equal(t, KindBinary, r.Kind)
		require.True(t, r.Truncated)
		require.LessOrEqual(t, len(r.Text), 4096)
	})
	t.Run("big text cut on a rune", func(t *testing.T) {
		p := []byte(strings.Repeat("é", 10<<20/2))
		r := Render(p, 4095)
		require.Equal(t, KindText, r.Kind)
		require.True(t, r.Truncated)
		require.Len(t, r.Text, 4094)
	})
	t.Run("invalid utf8 is binary", func(t *testing.T) {
		require.Equal(t, KindBinary, Render([]byte("ab\xffcd"), 100).Kind)
	})
	t.Run("preview", func(t *testing.T) {
		require.Equal(t, "a b", Preview([]byte("a\nb"), 10))
		require.Equal(t, "abc…", Preview([]byte("abcdef"), 3))
		require.Equal(t, "0x00ff", Preview([]byte{0, 0xff}, 10))
	})
}

func TestLevels(t *testing.T) {
	require.Equal(t, []string{"a", "b", "c"}, Levels("a/b/c"))
	require.Equal(t, []string{"", "a", ""}, Levels("/a/"))
	require.Equal(t, []string{"$SYS", "broker"}, Levels("$SYS/broker"))
	deep := strings.Repeat("x/", 40) + "end"
	l := Levels(deep)
	require.Len(t, l, maxLevels)
	require.Equal(t, deep, strings.Join(l, "/"), "nothing is lost: the rest stays in the last level")
}

func msg(topic, payload string) *client.Message {
	return &client.Message{Topic: topic, Payload: []byte(payload)}
}

func TestModelTopics(t *testing.T) {
	m := NewModel(Limits{})
	t0 := time.UnixMilli(1_000_000)
	m.Add(msg("sensor/temp", "Temperature: 21.0°C"), t0)
	m.Add(&client.Message{Topic: "sensor/temp", Payload: []byte("Temperature: 23.5°C"), QoS: 1, Retain: true}, t0.Add(time.Second))
	m.Add(msg("sensor/temp", "offline"), t0.Add(2*time.Second))
	m.Add(msg("door", "open"), t0.Add(3*time.Second))

	tp := m.Topic("sensor/temp")
	require.NotNil(t, tp)
	require.Equal(t, uint64(3), tp.Count)
	require.Equal(t, []string{"sensor", "temp"}, tp.Levels)
	require.Equal(t, int64(1_000_000), tp.First)
	require.Equal(t, int64(1_002_000), tp.Last)
	require.Equal(t, "offline", tp.Payload)
	require.False(t, tp.Retain, "the flags are the last message's")
	require.True(t, tp.HasNum)
	require.False(t, tp.NumOK, "the last payload had no number")
	require.Equal(t, 21.0, tp.Min)
	require.Equal(t, 23.5, tp.Max)
	require.Equal(t, 23.5, tp.Value)
	require.Equal(t, []Point{{1_000_000, 21}, {1_001_000, 23.5}}, tp.Points)
	require.False(t, m.Topic("door").HasNum)
	require.Equal(t, 2, m.Caps().TrackedTopics)
	require.Equal(t, 1, m.Caps().NumberedTopics)

	log := m.Log()
	require.Len(t, log, 4)
	require.Equal(t, "door", log[3].Topic)
	require.Equal(t, uint64(4), log[3].Seq)

	u, ok := m.takeUpdate()
	require.True(t, ok)
	require.Len(t, u.Topics, 2)
	require.Len(t, u.Log, 4)
	_, ok = m.takeUpdate()
	require.False(t, ok, "nothing changed since")

	m.Add(msg("sensor/temp", "22"), t0.Add(4*time.Second))
	u, ok = m.takeUpdate()
	require.True(t, ok)
	require.Len(t, u.Topics, 1)
	require.Equal(t, []Point{{1_004_000, 22}}, u.Topics[0].Points, "an update carries only the new points")
	require.Len(t, m.Topic("sensor/temp").Points, 3)
}

func TestModelSeriesStaysOneField(t *testing.T) {
	m := NewModel(Limits{})
	now := time.Now()
	m.Add(msg("j", `{"t":20,"h":40}`), now)
	m.Add(msg("j", `{"h":41}`), now)
	m.Add(msg("j", `{"h":42,"t":21}`), now)
	tp := m.Topic("j")
	require.Equal(t, "t", tp.Field)
	require.Equal(t, []Point{{float64(now.UnixMilli()), 20}, {float64(now.UnixMilli()), 21}}, tp.Points)
	require.Equal(t, 21.0, tp.Value)
}

func TestModelCaps(t *testing.T) {
	lim := Limits{Topics: 10, Points: 8, Payload: 64, Log: 5, LogPerPush: 3, TopicName: 16, Preview: 10}
	m := NewModel(lim)
	now := time.Now()
	for i := range 25 {
		m.Add(msg(fmt.Sprintf("t/%d", i), itoa(i)), now)
	}
	c := m.Caps()
	require.Equal(t, 10, c.TrackedTopics)
	require.True(t, c.TopicsFull)
	require.Equal(t, uint64(15), c.Untracked)
	require.Len(t, m.Topics(), 10)
	require.Nil(t, m.Topic("t/20"), "topics past the limit are not tracked")

	log := m.Log()
	require.Len(t, log, 5)
	require.Equal(t, "t/24", log[4].Topic, "untracked topics still reach the log")
	require.Equal(t, 0, log[4].TopicID)
	require.True(t, m.Caps().LogFull)

	u, _ := m.takeUpdate()
	require.Len(t, u.Log, 3, "at most LogPerPush lines per update")
	require.Equal(t, "t/24", u.Log[2].Topic, "the latest lines")
	require.Equal(t, uint64(22), u.LogSkipped)

	for i := range 30 {
		m.Add(msg("t/0", itoa(i)), now)
	}
	require.LessOrEqual(t, len(m.Topic("t/0").Points), 8)
	require.True(t, m.Caps().PointsTrimmed)
	pts := m.Topic("t/0").Points
	require.Equal(t, 29.0, pts[len(pts)-1][1], "the newest points are kept")

	m = NewModel(lim)
	m.Add(msg("big", strings.Repeat("x", 10<<20)), now)
	require.LessOrEqual(t, len(m.Topic("big").Payload), 64)
	require.True(t, m.Topic("big").Cut)
	require.Equal(t, 10<<20, m.Topic("big").Size)
	require.Equal(t, uint64(1), m.Caps().PayloadsCut)
}

func TestModelTopicNames(t *testing.T) {
	m := NewModel(Limits{TopicName: 16})
	now := time.Now()
	m.Add(msg("bad/\xff\xfe", "1"), now)
	m.Add(msg("bad/\xfe\xff", "2"), now)
	require.Len(t, m.Topics(), 2, "different raw names stay different topics")
	require.Equal(t, "bad/\uFFFD", m.Topics()[0].Name)
	require.Equal(t, "bad/\uFFFD", m.Topics()[1].Name)
	require.NotEqual(t, m.Topics()[0].ID, m.Topics()[1].ID)
	require.True(t, m.Caps().InvalidUTF8Seen)

	long1 := strings.Repeat("a", 100) + "1"
	long2 := strings.Repeat("a", 100) + "2"
	m.Add(msg(long1, "x"), now)
	m.Add(msg(long2, "x"), now)
	m.Add(msg(long1, "x"), now)
	require.Len(t, m.Topics(), 4)
	require.Equal(t, uint64(2), m.Topic(long1).Count)
	require.Equal(t, strings.Repeat("a", 16)+"…", m.Topic(long1).Name)
	for key := range m.topics {
		require.LessOrEqual(t, len(key), 16+1+16, "keys of long names stay short")
	}
}

func itoa(i int) string { return fmt.Sprint(i) }
