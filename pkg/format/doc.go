// SPDX-License-Identifier: Apache-2.0

// Package format turns received MQTT messages into text: mosquitto_sub's
// default and verbose (-v) output, its -F format strings (including the
// %j/%J JSON objects exactly as mosquitto's cJSON build prints them), and
// mqttkit's own JSON Lines schema (--json, see docs/json.md).
//
// The package knows nothing about flags, exit codes or MQTT libraries:
// pkg/cli converts each message pkg/client received into a [Message] and
// builds a [Printer] from its options. Rendering appends to a caller-owned
// byte slice so that the per-message hot path does not allocate.
//
// Colour is the only terminal concern handled here: [NewPalette] builds the
// fatih/color palette used for topics and payloads in the default and -v
// modes. Format strings (-F) and JSON output are never coloured.
package format
