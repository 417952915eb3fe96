// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// ConnOptions are the connection flags shared by every client command
// (pub, sub, simulate-sensor). They are declared once, here; TLS,
// WebSockets, URLs and profiles extend this type, not the commands.
type ConnOptions struct {
	Host      string
	Port      int
	ID        string
	IDPrefix  string
	KeepAlive int
	Username  string
	Password  string
	Version   string
	Debug     bool
	Quiet     bool
}

const (
	defaultPort      = 1883
	defaultKeepAlive = 60
)

// connFlags declares the shared connection flags bound to o.
func connFlags(o *ConnOptions) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "host", Aliases: []string{"h"}, Value: "localhost", EnvVars: []string{"MQTT_HOST"}, Destination: &o.Host, Usage: "broker host"},
		&cli.IntFlag{Name: "port", Aliases: []string{"p"}, EnvVars: []string{"MQTT_PORT"}, Destination: &o.Port, DefaultText: "1883", Usage: "broker port"},
		&cli.StringFlag{Name: "id", Aliases: []string{"i"}, EnvVars: []string{"MQTT_CLIENT_ID"}, Destination: &o.ID, Usage: "client id (default: assigned by the broker)"},
		&cli.StringFlag{Name: "id-prefix", Aliases: []string{"I"}, Destination: &o.IDPrefix, Usage: "client id prefix; the process id is appended"},
		&cli.IntFlag{Name: "keepalive", Aliases: []string{"k"}, Value: defaultKeepAlive, Destination: &o.KeepAlive, Usage: "keepalive in seconds (5..65535)"},
		&cli.StringFlag{Name: "username", Aliases: []string{"u"}, EnvVars: []string{"MQTT_USERNAME"}, Destination: &o.Username, Usage: "username"},
		&cli.StringFlag{Name: "password", Aliases: []string{"P", "pw"}, EnvVars: []string{"MQTT_PASSWORD"}, Destination: &o.Password, Usage: "password (prefer MQTT_PASSWORD: argv is visible to other users)"},
		&cli.StringFlag{Name: "protocol-version", Aliases: []string{"V"}, Value: "5", Destination: &o.Version, Usage: "MQTT version: 5, 311 or 31 (also mqttv5, mqttv311, mqttv31)"},
		&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Destination: &o.Debug, Usage: "print debug messages on stderr"},
		&cli.BoolFlag{Name: "quiet", Destination: &o.Quiet, Usage: "do not print runtime errors"},
	}
}

// clientConfig checks the connection flags and turns them into a client.Config.
func (o *ConnOptions) clientConfig(d *Deps) (*client.Config, error) {
	cfg := &client.Config{
		Host:       o.Host,
		Port:       o.Port,
		ClientID:   o.ID,
		Username:   o.Username,
		Password:   o.Password,
		CleanStart: true,
		Log:        d.Log,
	}
	if cfg.Host == "" {
		return nil, usageErrorf("empty host")
	}
	if cfg.Port == 0 {
		cfg.Port = defaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, usageErrorf("Invalid port given: %d", o.Port)
	}
	if o.KeepAlive < 5 || o.KeepAlive > 65535 {
		return nil, usageErrorf("Invalid keepalive given, it must be between 5 and 65535 inclusive.")
	}
	cfg.KeepAlive = uint16(o.KeepAlive)
	v, err := client.ParseVersion(o.Version)
	if err != nil {
		return nil, usageErrorf("Invalid protocol version argument given.")
	}
	cfg.Version = v
	if o.ID != "" && o.IDPrefix != "" {
		return nil, usageErrorf("-i and -I argument cannot be used together.")
	}
	if o.IDPrefix != "" {
		cfg.ClientID = o.IDPrefix + strconv.Itoa(os.Getpid())
	}
	if v != client.V5 && o.Password != "" && o.Username == "" {
		return nil, usageErrorf("Problem setting username and/or password.")
	}
	if o.Debug {
		d.Level.Set(slog.LevelDebug)
	}
	return cfg, nil
}

// runtimeErr marks err as silent when --quiet is set.
func (o *ConnOptions) runtimeErr(err error) error {
	if err == nil || !o.Quiet {
		return err
	}
	return &ExitError{Code: exitCode(err), Err: err, Silent: true}
}

// describe names a broker address for messages.
func describe(cfg *client.Config) string {
	return fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}
