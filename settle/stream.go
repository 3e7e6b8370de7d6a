package settle

import (
	"errors"
	"fmt"
)

// ErrStreamReceipt is wrapped by every refusal of StreamReceipt.Event: a stream whose
// receipt event is not where a host puts it.
var ErrStreamReceipt = errors.New("settle: the stream's receipt is out of place")

// StreamReceipt finds a stream's receipt among its events, in order, and refuses an
// order no host sends (web/doc.go, "Billing"): a stream carries at most one receipt
// event (the `cocoon_receipt` member of a chunk), nothing follows it but the error
// event that ends a failed or cut stream, and nothing follows an error event. The
// signature event is not one of the events it is given. Both clients apply this one
// rule: web/client's Chat, and the browser library through the verifier's
// cocoonCheckAnswer (web/page/verifier), so they cannot disagree on a stream. Before
// it, a second receipt event replaced the first, so a stream, signed whole, could carry
// a bill the client never checked, or text after its bill that the bill did not cover.
//
// The zero value is ready. It is not safe for concurrent use, and costs nothing per
// event.
type StreamReceipt struct {
	receipt *Receipt
	ended   bool // an error event came
}

// Event takes the stream's next event: receipt is its `cocoon_receipt` (nil for none)
// and failure whether it is an error event. It fails, wrapping ErrStreamReceipt, when
// the event is out of place; the message, safe to show, says which rule it breaks.
func (s *StreamReceipt) Event(receipt *Receipt, failure bool) error {
	switch {
	case s.ended:
		return fmt.Errorf("%w: an event follows the error event that ends the stream", ErrStreamReceipt)
	case s.receipt != nil && receipt != nil:
		return fmt.Errorf("%w: a second receipt event (seq %d after seq %d): a host sends one per stream", ErrStreamReceipt, receipt.Seq, s.receipt.Seq)
	case s.receipt != nil && !failure:
		return fmt.Errorf("%w: more of the answer follows its receipt event (seq %d), which a host sends after the answer's last chunk", ErrStreamReceipt, s.receipt.Seq)
	}
	if receipt != nil {
		s.receipt = receipt
	}
	s.ended = failure
	return nil
}

// Receipt is the stream's receipt event's receipt, nil when none came (yet).
func (s *StreamReceipt) Receipt() *Receipt { return s.receipt }
