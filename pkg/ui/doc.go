// SPDX-License-Identifier: Apache-2.0

// Package ui is the live dashboard of `mqtt ui`: a Model of what a
// subscription receives (topics, their last payload rendered for people,
// the numbers they carry, a message log), bounded by Limits; a Hub that
// takes messages from the MQTT client and pushes a snapshot and then
// changes to every open page over Server-Sent Events; and the HTTP handler
// that serves the page (embedded HTML, CSS and JavaScript of the project's
// own, loading nothing from elsewhere) and its publish API.
//
// The package knows nothing of flags or exit codes, and does no work when
// the program starts: the page is embedded, everything else is built when
// New and Handler are called.
package ui
