// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
)

// runWith runs the app with stdin, a failing /dev/tty and -d output.
func runWith(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	io, in, out, errOut := iostreams.Test()
	in.WriteString(stdin)
	d := newDeps(io)
	d.OpenTTY = func() (*os.File, error) { return nil, errors.New("no tty in tests") }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code = Run(ctx, d, append([]string{"mqtt"}, args...))
	return code, out.String(), errOut.String()
}

// pub -s and -l read the messages from stdin: --password-prompt must not
// take the first message as the password.
func TestPubPasswordPromptStdinBusy(t *testing.T) {
	for _, src := range []string{"-l", "-s"} {
		code, _, stderr := runWith(t, "msg1\nmsg2\n", "pub", "-p", "1", "-t", "a", src, "--password-prompt")
		require.Equal(t, ExitFailure, code)
		require.Contains(t, stderr, "Error: --password-prompt needs a terminal when the messages come from stdin (-s, -l); set MQTT_PASSWORD instead\n")
	}
}

// v3Broker answers an MQTT 5 CONNECT like a 3.1.1-only broker (return
// code 1) and accepts 3.1.1, acknowledging QoS 1 publishes.
func v3Broker(t *testing.T) (port int, levels func() []byte) {
	t.Helper()
	var mu sync.Mutex
	var seen []byte
	port = rawmqtt.Serve(t, 10*time.Second, func(c net.Conn) {
		r := bufio.NewReader(c)
		h, body, err := rawmqtt.ReadRaw(r)
		if err != nil || h>>4 != 1 || len(body) < 7 {
			return
		}
		mu.Lock()
		seen = append(seen, body[6])
		mu.Unlock()
		if body[6] != 4 {
			_, _ = c.Write([]byte{0x20, 2, 0, 1})
			return
		}
		_, _ = c.Write([]byte{0x20, 2, 0, 0})
		for {
			h, body, err := rawmqtt.ReadRaw(r)
			if err != nil {
				return
			}
			switch h >> 4 {
			case 3: // PUBLISH: acknowledge QoS 1
				if (h>>1)&3 == 1 && len(body) >= 2 {
					tl := int(body[0])<<8 | int(body[1])
					if len(body) >= 4+tl {
						_, _ = c.Write([]byte{0x40, 2, body[2+tl], body[3+tl]})
					}
				}
			case 8: // SUBSCRIBE: grant QoS 0
				_, _ = c.Write([]byte{0x90, 3, body[0], body[1], 0})
				_, _ = c.Write([]byte{0x30, 5, 0, 1, 'a', 'h', 'i'})
			case 12:
				_, _ = c.Write([]byte{0xd0, 0})
			case 14:
				return
			}
		}
	})
	return port, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return append([]byte(nil), seen...)
	}
}

func TestFallbackTo311(t *testing.T) {
	port, levels := v3Broker(t)
	p := strconv.Itoa(port)
	code, _, stderr := runWith(t, "", "pub", "-h", "127.0.0.1", "-p", p, "-t", "a", "-m", "x", "-q", "1", "-d")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, `msg="broker refused MQTT 5, retrying with MQTT 3.1.1"`)
	require.Equal(t, []byte{5, 4}, levels())

	code, stdout, stderr := runWith(t, "", "sub", "-h", "127.0.0.1", "-p", p, "-t", "a", "-C", "1", "-d")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "hi\n", stdout)
	require.Contains(t, stderr, `msg="broker refused MQTT 5, retrying with MQTT 3.1.1"`)

	// Without -d nothing is said; with -V 5 there is no retry.
	code, _, stderr = runWith(t, "", "pub", "-h", "127.0.0.1", "-p", p, "-t", "a", "-m", "x")
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stderr)
	code, _, stderr = runWith(t, "", "pub", "-V", "5", "-h", "127.0.0.1", "-p", p, "-t", "a", "-m", "x")
	require.Equal(t, 132, code)
	require.Contains(t, stderr, "Connection error: Unsupported Protocol Version. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode.\n")
}

func TestExplain(t *testing.T) {
	o := &ConnOptions{CAFile: "ca.pem", eff: effective{tlsFrom: "--cafile", caFrom: "the CA certificates in ca.pem", transport: client.TCP, certFile: "me.pem"}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&client.TLSError{Addr: "h:8883", Kind: client.TLSUnknownAuthority, Issuer: "CN=Lab CA"},
			`TLS: the certificate of the broker at h:8883 (issued by "CN=Lab CA") is not signed by the CA certificates in ca.pem: pass the certificate of the CA that signed it with --cafile FILE, or check that you are talking to the right broker.`},
		{&client.TLSError{Addr: "10.0.0.1:8883", Kind: client.TLSNameMismatch, ServerName: "10.0.0.1", CertNames: []string{"broker.lan", "10.0.0.2"}},
			`TLS: the certificate of the broker at 10.0.0.1:8883 is valid for broker.lan, 10.0.0.2, not for "10.0.0.1": connect with -h broker.lan, or add --insecure to skip the name check (the certificate chain is still verified).`},
		{&client.TLSError{Addr: "h:8883", Kind: client.TLSNameMismatch, ServerName: "h", CertNames: []string{"*.example.com"}},
			`TLS: the certificate of the broker at h:8883 is valid for *.example.com, not for "h": add --insecure to skip the name check (the certificate chain is still verified).`},
		{&client.TLSError{Addr: "h:1883", Kind: client.TLSNotTLS},
			`the broker at h:1883 does not speak TLS on port 1883 (it dropped the TLS handshake): drop --cafile to connect without TLS, or use its TLS port (usually 8883).`},
		{&client.TLSError{Addr: "h:8883", Kind: client.TLSClientCertNeeded},
			`TLS: the broker at h:8883 requires a client certificate: pass --cert FILE and --key FILE.`},
		{&client.TLSError{Addr: "h:8883", Kind: client.TLSClientCertRejected, Err: errors.New("remote error: tls: unknown certificate authority")},
			`TLS: the broker at h:8883 rejected the client certificate me.pem (remote error: tls: unknown certificate authority): is it signed by a CA the broker trusts, and still valid?`},
		{&client.TLSError{Addr: "h:8883", Kind: client.TLSExpired, NotAfter: time.Date(2020, 1, 2, 3, 4, 0, 0, time.UTC)},
			`TLS: the certificate of the broker at h:8883 has expired or is not valid yet (valid until 2020-01-02 03:04 UTC): check this computer's clock, or ask for the certificate to be renewed.`},
		{&client.TLSError{Addr: "h:8883", Kind: client.TLSOther, Err: errors.New("boom")}, `TLS handshake with h:8883 failed: boom`},
		{&client.TimeoutError{Addr: "h:1", Stage: client.StageDial, After: time.Second},
			`could not reach h:1 within 1s: is the host up and the port open (no firewall dropping packets)? (--connect-timeout sets the limit)`},
		{&client.ClosedError{Addr: "h:8883", Stage: client.StageConnack, LooksTLS: true},
			`the broker at h:8883 answered with TLS: port 8883 is a TLS port; add --cafile FILE (or --tls-use-os-certs for a broker with a public certificate).`},
		{&client.HandshakeError{URL: "ws://h:8083/mqtt", Status: "404 Not Found"},
			`WebSocket handshake with ws://h:8083/mqtt failed: HTTP 404 Not Found: check the WebSocket path (--ws-path, default /mqtt) and that port 8083 is the broker's WebSocket port.`},
		{&net.DNSError{Name: "nosuch.example", Err: "no such host", IsNotFound: true},
			`cannot find the broker's host "nosuch.example": no such host. Check -h (or -L, MQTT_HOST, the profile).`},
		{&client.BindError{Addr: "192.0.2.1", Err: errors.New("cannot assign requested address")},
			`cannot connect from local address 192.0.2.1 (-A): cannot assign requested address.`},
	} {
		got := o.explain(tc.err)
		require.Equal(t, tc.want, got.Error())
		require.ErrorIs(t, got, tc.err)
		require.Equal(t, ExitFailure, exitCode(got))
	}
	for from, want := range map[string]string{
		"-p 8883":            "port 8883 turns TLS on: add --no-tls for plain MQTT on port 8883",
		"-L mqtts://":        "use mqtt:// instead of mqtts:// in -L",
		"-L wss://":          "use ws:// instead of wss:// in -L",
		`profile "x"`:        `connect without TLS (profile "x" turns it on)`,
		"--tls-use-os-certs": "drop --tls-use-os-certs to connect without TLS",
	} {
		o.eff.tlsFrom = from
		require.Equal(t, want, o.tlsOffHint())
	}
	ce := &client.ConnectError{Version: client.V311, Code: 5}
	require.Same(t, error(ce), o.explain(ce), "refusals keep mosquitto's words")

	// WebSocket hints name WebSocket ports and schemes: no 8883 for a
	// wss:// URL sent to a plain ws port, no mqtt:// for a wss port.
	ws := &ConnOptions{eff: effective{tlsFrom: "-L wss://", transport: client.WebSocket}}
	require.Equal(t, `the broker at h:8083 does not speak TLS on port 8083 (it dropped the TLS handshake): use ws:// instead of wss:// in -L, or use its secure WebSocket (wss) port.`,
		ws.explain(&client.TLSError{Addr: "h:8083", Kind: client.TLSNotTLS}).Error())
	require.Equal(t, `WebSocket handshake with wss://h:8883/mqtt failed (unexpected EOF): is port 8883 a WebSocket listener? MQTT over TLS ports need mqtts:// instead of wss://.`,
		ws.explain(&client.HandshakeError{URL: "wss://h:8883/mqtt", Err: errors.New("unexpected EOF")}).Error())
	require.Equal(t, `WebSocket handshake with ws://h:1883/mqtt failed (unexpected EOF): is port 1883 a WebSocket listener? Plain MQTT ports need mqtt:// instead of ws://.`,
		ws.explain(&client.HandshakeError{URL: "ws://h:1883/mqtt", Err: errors.New("unexpected EOF")}).Error())
}

func TestPropertiesMeanMQTT5(t *testing.T) {
	o, err := parsePub(t, "-t", "a", "-m", "x", "-D", "publish", "content-type", "text/plain")
	require.NoError(t, err)
	require.False(t, o.cfg.Fallback311, "-D asks for MQTT 5: no retry with 3.1.1")
	o, err = parsePub(t, "-t", "a", "-m", "x")
	require.NoError(t, err)
	require.True(t, o.cfg.Fallback311)
}
