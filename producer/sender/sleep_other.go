//go:build !linux

package sender

import "time"

// sleepFine sleeps for about d; outside Linux it is time.Sleep.
func sleepFine(d time.Duration) { time.Sleep(d) }
