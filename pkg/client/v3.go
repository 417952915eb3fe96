// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// v3Client implements Client with paho.mqtt.golang (MQTT 3.1 and 3.1.1).
type v3Client struct {
	c     mqtt3.Client
	guard *frameGuard
	done  chan struct{}
	once  sync.Once

	mu  sync.Mutex
	err error
	bye bool
}

func dialV3(ctx context.Context, cfg *Config, h Handler) (Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	log := cfg.logger()
	log.Debug("connecting", "addr", cfg.Addr(), "transport", cfg.transportName(), "version", cfg.Version.String(), "client_id", cfg.ClientID)
	conn, err := dialConn(ctx, cfg)
	if err != nil {
		return nil, err
	}
	vc := &v3Client{done: make(chan struct{})}
	o := mqtt3.NewClientOptions()
	o.AddBroker("tcp://" + cfg.Addr())
	o.SetProtocolVersion(uint(cfg.Version))
	o.SetClientID(cfg.ClientID)
	o.SetUsername(cfg.Username)
	o.SetPassword(cfg.Password)
	o.SetCleanSession(cfg.CleanStart)
	o.SetKeepAlive(time.Duration(cfg.KeepAlive) * time.Second)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	// paho sets this deadline for CONNACK when it gets the connection:
	// what is left of ours, so that TCP+TLS+CONNACK share one timeout.
	o.SetConnectTimeout(max(time.Until(deadline(ctx, cfg)), time.Millisecond))
	o.SetOrderMatters(true)
	if cfg.Will != nil {
		o.SetBinaryWill(cfg.Will.Topic, cfg.Will.Payload, cfg.Will.QoS, cfg.Will.Retain)
	}
	var handed atomic.Bool
	guard := newFrameGuard(conn, 0)
	vc.guard = guard
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt3.ClientOptions) (net.Conn, error) {
		if handed.Swap(true) {
			return nil, errors.New("reconnecting is not supported")
		}
		return guard, nil
	})
	o.SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
		vc.fail(guard.why(err))
		vc.close()
	})
	o.SetAutoAckDisabled(cfg.ManualAck)
	if h != nil {
		o.SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			msg := &Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retain: m.Retained(), MID: m.MessageID(), Time: time.Now()}
			if cfg.ManualAck && m.Qos() > 0 {
				// paho.mqtt.golang queues the acknowledgement for its
				// writer in the order Ack is called, ahead of a later
				// DISCONNECT.
				msg.ack = m.Ack
			}
			h(msg)
		})
	}
	vc.c = mqtt3.NewClient(o)
	tok := vc.c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		conn.Close()
		tok.WaitTimeout(2 * time.Second)
		return nil, connackErr(ctx, cfg, conn, ctx.Err())
	}
	ct, _ := tok.(*mqtt3.ConnectToken)
	if rc := ct.ReturnCode(); rc > 0 && rc < 0x80 {
		// Every CONNACK refusal, whatever paho made of it.
		return nil, &ConnectError{Version: cfg.Version, Code: rc}
	}
	if err := tok.Error(); err != nil {
		conn.Close()
		if gerr := guard.err(); gerr != nil {
			return nil, gerr
		}
		return nil, connackErr(ctx, cfg, conn, err)
	}
	log.Debug("connected", "addr", cfg.Addr())
	return vc, nil
}

func (vc *v3Client) fail(err error) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.err == nil && !vc.bye {
		vc.err = err
	}
}

func (vc *v3Client) close() { vc.once.Do(func() { close(vc.done) }) }

func (vc *v3Client) Err() error {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.bye {
		return nil
	}
	return vc.err
}

func (vc *v3Client) Done() <-chan struct{} { return vc.done }

func (vc *v3Client) ClientID() string {
	r := vc.c.OptionsReader()
	return r.ClientID()
}

func wait(ctx context.Context, t mqtt3.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (vc *v3Client) Publish(ctx context.Context, m *Message) error {
	if m.Props != nil {
		return errors.New("MQTT 5 properties cannot be sent with MQTT 3.1.1")
	}
	err := vc.guard.why(wait(ctx, vc.c.Publish(m.Topic, m.QoS, m.Retain, m.Payload)))
	if errors.Is(err, mqtt3.ErrNotConnected) {
		if e := vc.Err(); e != nil {
			return e
		}
		return ErrNotConnected
	}
	return err
}

func (vc *v3Client) Subscribe(ctx context.Context, subs []Subscription) ([]byte, error) {
	filters := make(map[string]byte, len(subs))
	for _, s := range subs {
		filters[s.Filter] = s.QoS
	}
	t := vc.c.SubscribeMultiple(filters, nil)
	if err := wait(ctx, t); err != nil {
		return nil, vc.guard.why(err)
	}
	res := t.(*mqtt3.SubscribeToken).Result()
	out := make([]byte, len(subs))
	for i, s := range subs {
		out[i] = res[s.Filter]
	}
	return out, nil
}

func (vc *v3Client) SubscribeProps(ctx context.Context, subs []Subscription, props *SubscribeProperties) ([]byte, error) {
	if props != nil {
		return nil, ErrPropsNeedV5
	}
	return vc.Subscribe(ctx, subs)
}

func (vc *v3Client) UnsubscribeProps(ctx context.Context, filters []string, user []UserProperty) error {
	if len(user) > 0 {
		return ErrPropsNeedV5
	}
	return vc.Unsubscribe(ctx, filters)
}

func (vc *v3Client) Unsubscribe(ctx context.Context, filters []string) error {
	return vc.guard.why(wait(ctx, vc.c.Unsubscribe(filters...)))
}

// DisconnectProps is Disconnect: MQTT 3.1/3.1.1 DISCONNECT has no properties.
func (vc *v3Client) DisconnectProps(ctx context.Context, _ *DisconnectProperties) error {
	return vc.Disconnect(ctx)
}

func (vc *v3Client) Disconnect(ctx context.Context) error {
	vc.mu.Lock()
	vc.bye = true
	vc.mu.Unlock()
	vc.guard.bye.Store(true)
	vc.c.Disconnect(250)
	// paho.mqtt.golang returns after at most 250 ms, possibly while the
	// connection still lingers (frameGuard.Close): let it finish, or the
	// process may exit first and reset the connection.
	vc.guard.waitClosed(lingerTimeout + 250*time.Millisecond)
	vc.close()
	return nil
}
