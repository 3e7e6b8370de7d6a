package settle

import (
	"errors"
	"testing"
)

// TestStreamReceipt: the orders a host sends pass, with their receipt; a second
// receipt, more of the answer after the receipt, or anything after the error event
// that ends a stream is refused with ErrStreamReceipt.
func TestStreamReceipt(t *testing.T) {
	type event struct {
		receipt *Receipt
		failure bool
	}
	text, failure := event{}, event{failure: true}
	receipt := func(seq uint64) event { return event{receipt: &Receipt{Seq: seq}} }
	for _, tc := range []struct {
		name   string
		events []event
		ok     bool
		seq    uint64 // of the receipt kept, 0 for none
	}{
		{"no receipt", []event{text, text}, true, 0},
		{"a receipt after the answer", []event{text, text, receipt(4)}, true, 4},
		{"a receipt, then the error of a cut stream", []event{text, receipt(4), failure}, true, 4},
		{"an error without a receipt", []event{text, failure}, true, 0},
		{"a second receipt", []event{text, receipt(4), receipt(5)}, false, 4},
		{"text after the receipt", []event{text, receipt(4), text}, false, 4},
		{"a receipt after the error", []event{text, failure, receipt(4)}, false, 0},
		{"text after the error", []event{failure, text}, false, 0},
		{"a second error", []event{receipt(4), failure, failure}, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s StreamReceipt
			var err error
			for _, e := range tc.events {
				if err = s.Event(e.receipt, e.failure); err != nil {
					break
				}
			}
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.ok && !errors.Is(err, ErrStreamReceipt):
				t.Fatalf("err %v, want ErrStreamReceipt", err)
			case (s.Receipt() == nil && tc.seq != 0) || (s.Receipt() != nil && s.Receipt().Seq != tc.seq):
				t.Fatalf("receipt %+v, want seq %d", s.Receipt(), tc.seq)
			}
		})
	}
}
