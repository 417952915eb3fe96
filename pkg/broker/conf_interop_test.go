// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/testcert"
)

// confPorts is how many {{P1}}... placeholders a sameConf template may use.
const confPorts = 3

// sameConf runs the mosquitto.conf tmpl on mqtt broker (in process, through
// ParseConf and Config) and on the real mosquitto, and runs check against
// each, so that a test states once what both must do. In tmpl, {{P1}},
// {{P2}}, {{P3}} are free ports and {{DIR}} a directory holding files
// (files: name → content) that both brokers read. The mosquitto part skips
// when mosquitto is not installed (fails with MQTT_INTEROP=require).
func sameConf(t *testing.T, tmpl string, files map[string]string, check func(t *testing.T, kind string, ports []string)) {
	t.Helper()
	prepare := func(t *testing.T) (string, []string) {
		dir := t.TempDir()
		for name, content := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
		}
		var ports []string
		pairs := []string{"{{DIR}}", dir}
		for i := 1; i <= confPorts; i++ {
			p := strconv.Itoa(interop.FreePort(t))
			ports = append(ports, p)
			pairs = append(pairs, "{{P"+strconv.Itoa(i)+"}}", p)
		}
		return strings.NewReplacer(pairs...).Replace(tmpl), ports
	}
	t.Run("mqtt", func(t *testing.T) {
		text, ports := prepare(t)
		conf, err := ParseConf("test.conf", strings.NewReader(text))
		require.NoError(t, err)
		require.Empty(t, conf.Warnings)
		start(t, conf.Config())
		check(t, "mqtt", ports)
	})
	t.Run("mosquitto", func(t *testing.T) {
		bin := interop.Require(t, "mosquitto")
		text, ports := prepare(t)
		if os.Geteuid() == 0 {
			// mosquitto drops root privileges to its own user, which
			// cannot read the test's files.
			text = "user root\n" + text
		}
		conf := filepath.Join(t.TempDir(), "mosquitto.conf")
		require.NoError(t, os.WriteFile(conf, []byte(text), 0o644))
		var out bytes.Buffer
		cmd := exec.Command(bin, "-c", conf)
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if t.Failed() {
				t.Logf("mosquitto log:\n%s", out.String())
			}
		})
		for _, p := range ports {
			if !strings.Contains(text, " "+p) {
				continue
			}
			waitFor(t, func() bool {
				select {
				case <-exited:
					t.Fatalf("mosquitto exited: %s", out.String())
				default:
				}
				c, err := net.DialTimeout("tcp", "127.0.0.1:"+p, time.Second)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
		}
		check(t, "mosquitto", ports)
	})
}

// A TLS listener whose certfile holds only the leaf, signed by an
// intermediate CA that is in the cafile with the root, sends the chain:
// a client that trusts only the root verifies it (mosquitto: OpenSSL
// builds the chain from the cafile).
func TestConfTLSChainFromCAFile(t *testing.T) {
	root, err := testcert.NewCA("chain root")
	require.NoError(t, err)
	inter, err := root.Intermediate("chain intermediate")
	require.NoError(t, err)
	leaf, err := inter.Server("localhost", "127.0.0.1")
	require.NoError(t, err)
	files := map[string]string{
		"all-ca.pem": string(root.PEM) + string(inter.PEM),
		"server.pem": string(leaf.CertPEM),
		"server.key": string(leaf.KeyPEM),
	}
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\ncafile {{DIR}}/all-ca.pem\ncertfile {{DIR}}/server.pem\nkeyfile {{DIR}}/server.key\n" +
		// no cafile: the leaf alone, which the client cannot verify
		"listener {{P2}} 127.0.0.1\ncertfile {{DIR}}/server.pem\nkeyfile {{DIR}}/server.key\n"
	sameConf(t, conf, files, func(t *testing.T, _ string, ports []string) {
		cfg := &tls.Config{RootCAs: root.Pool(), ServerName: "localhost"}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+ports[0], cfg)
		require.NoError(t, err)
		require.Len(t, conn.ConnectionState().PeerCertificates, 3, "leaf, intermediate, root")
		newRawClient(t, conn, 4).mustConnect("chain", "", "")

		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+ports[1], cfg)
		if err == nil {
			conn.Close()
		}
		require.Error(t, err, "without cafile the intermediate is not sent")
	})
}
