package queue

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/levee-dev/levee/internal/event"
)

// DecodeMessage returns the events a stream message carries: a pack, or one
// event in JSON. An error means nothing in the message can be read; a bad
// event inside a readable pack is reported in its Record.
func DecodeMessage(h nats.Header, data []byte) ([]Record, error) {
	switch f := h.Get(HeaderFormat); f {
	case FormatPack:
		return DecodePack(data)
	case FormatJSON, "":
		e, err := event.ParseJSON(data)
		if err != nil {
			return nil, err
		}
		return []Record{{Event: e, Raw: data}}, nil
	default:
		return nil, fmt.Errorf("queue: unknown message format %q", f)
	}
}
