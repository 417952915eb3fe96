// SPDX-License-Identifier: Apache-2.0

package format

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// wrapReformat renders {"payload": <payload parsed by cJSON>} the way
// testdata/cjson_oracle.py asks libcjson to.
func wrapReformat(payload []byte, pretty bool) ([]byte, bool) {
	w := cjWriter{pretty: pretty}
	dst := w.open(nil)
	dst = w.key(dst, 0, "payload")
	dst, ok := cjsonReformat(dst, payload, pretty, w.depth)
	if !ok {
		return nil, false
	}
	return w.close(dst, 1), true
}

// cjsonCorpus is a hand-written list of inputs that exercise cJSON corner
// cases; TestCJSONOracle adds random mutations of them.
var cjsonCorpus = []string{
	`1`, `-0`, `-0.0`, `0.1`, `1e5`, `1E+05`, `1e-5`, `1e400`, `-1e400`, `1e-400`, `-1e-400`,
	`12345678901234567890`, `0.30000000000000004`, `3.141592653589793`, `100`, `1.`, `-.5`, `01`,
	`1.e5`, `1e`, `1e+`, `-`, `--1`, `+1`, `.5`, `1.5.5`, `2147483647`, `2147483648`, `-2147483649`,
	`123456789012345678901234567890123456789012345678901234567890123456789`,
	`"str"`, `""`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\u20ac\ud83d\ude00"`, `"\u0000abc"`, `"ab\u0000c"`,
	`"\uZZZZ"`, `"\u12"`, `"\ud800"`, `"\ud800\u0041"`, `"\udc00"`, `"\x"`, `"raw` + "\x01\x1f\x7f\xc3\xa9\xff" + `"`,
	`"unterminated`, `"\"`, `"\u1\"x"`, `"\u00\\"`,
	`null`, `true`, `false`, `nul`, `truex`, `nullnull`, `[]`, `{}`, `[ ]`, `{ }`, `[1,]`, `[,1]`, `{"a":1,}`,
	`{"a" : 1 , "b":[1,2,{"c":{}}], "d":{"e":[]}}`, `[[[[]]]]`, `[{}, {"a":[{}]}]`, `{"":""}`,
	`{"k\u0000x":1}`, `{1:2}`, `{"a" 1}`, `{"a":}`, ` [1, 2] `, "\x01[1]\x1f", "\xef\xbb\xbf[1]", "\xef\xbb\xbf1",
	"\xef\xbb\xbf", `[1] x`, `[1]]`, `{"x":1} x`, `[1 2]`, "[\"a\",\n\t\"b\"]", `[-0,0.0,-1.5e-3]`,
	strings.Repeat("[", 999) + strings.Repeat("]", 999),
	strings.Repeat("[", 1000) + strings.Repeat("]", 1000),
	strings.Repeat("[", 1001) + strings.Repeat("]", 1001),
	strings.Repeat(`{"a":`, 1000) + "1" + strings.Repeat("}", 1000),
	strings.Repeat(`{"a":`, 1001) + "1" + strings.Repeat("}", 1001),
}

// TestCJSONOracle compares cjsonReformat with the system's libcjson (the
// library mosquitto_sub links) through a small Python ctypes script, on the
// corpus above plus seeded random mutations. It needs python3 and
// libcjson.so.1; it skips without them unless MQTT_INTEROP=require.
func TestCJSONOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("oracle comparison skipped in -short mode")
	}
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import ctypes; ctypes.CDLL('libcjson.so.1')").Run()
	}
	if err != nil {
		if os.Getenv("MQTT_INTEROP") == "require" {
			t.Fatalf("python3 with libcjson.so.1 is required (MQTT_INTEROP=require): %v", err)
		}
		t.Skipf("python3 with libcjson.so.1 not available: %v", err)
	}
	inputs := make([][]byte, 0, 4000)
	for _, s := range cjsonCorpus {
		inputs = append(inputs, []byte(s))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("[]{}\",:\\u0123456789abcdefABCDEF.eE+- \t\n\x01\x7f\xc3\xa9tnrul/")
	for i := 0; i < 3000; i++ {
		base := []byte(cjsonCorpus[rng.IntN(len(cjsonCorpus))])
		if len(base) > 200 {
			base = base[:200]
		}
		b := append([]byte(nil), base...)
		for k := rng.IntN(4) + 1; k > 0; k-- {
			switch rng.IntN(3) {
			case 0: // insert
				pos := rng.IntN(len(b) + 1)
				b = append(b[:pos], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[pos:]...)...)
			case 1: // delete
				if len(b) > 0 {
					pos := rng.IntN(len(b))
					b = append(b[:pos], b[pos+1:]...)
				}
			case 2: // replace
				if len(b) > 0 {
					b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
				}
			}
		}
		if len(b) > 0 && !bytes.Contains(b, []byte{0}) {
			inputs = append(inputs, b)
		}
	}
	var stdin bytes.Buffer
	for _, in := range inputs {
		stdin.WriteString(hex.EncodeToString(in))
		stdin.WriteByte('\n')
	}
	cmd := exec.Command(py, "testdata/cjson_oracle.py")
	cmd.Stdin = &stdin
	out, err := cmd.Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	require.Len(t, lines, len(inputs))
	valid := 0
	for i, in := range inputs {
		compact, okC := wrapReformat(in, false)
		pretty, okP := wrapReformat(in, true)
		require.Equal(t, okC, okP)
		if lines[i] == "ERR" {
			require.False(t, okC, "input %q: libcjson rejects it, we accept: %s", in, compact)
			continue
		}
		valid++
		require.True(t, okC, "input %q: libcjson accepts it, we reject", in)
		f := strings.Fields(lines[i])
		require.Len(t, f, 2)
		wantC, _ := hex.DecodeString(f[0])
		wantP, _ := hex.DecodeString(f[1])
		require.Equal(t, string(wantC), string(compact), "compact, input %q", in)
		require.Equal(t, string(wantP), string(pretty), "pretty, input %q", in)
	}
	require.Greater(t, valid, 100, "the corpus should contain enough valid documents")
}
