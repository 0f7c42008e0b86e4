package xeliontest

// TransferShape is the form of the callTransferredEvent in an attended
// transfer the fake plays (AttendedTransfer). Xelion names the object of
// that notification CallTransferredEvent and publishes none of its fields,
// so the shapes other than TransferCallEvent are guesses a client must
// survive, not captures.
type TransferShape int

const (
	// TransferCallEvent: a CallEvent of the customer's call id naming the
	// customer and the party the call was handed to.
	TransferCallEvent TransferShape = iota
	// TransferCalls: the call handed over and the consultation it joins,
	// each a CallEvent ({"transferredCall": …, "consultationCall": …}).
	TransferCalls
	// TransferIDs: only the two call ids ({"originalCallId", "newCallId"}).
	TransferIDs
	// TransferEmpty: {"object":{}}, nothing a client can read.
	TransferEmpty
	// TransferUnknown: fields no client knows, no callId.
	TransferUnknown
)

// The parties and call ids of AttendedTransfer: customer C calls the
// company, Anna (OID 1650938) answers, consults Bert (OID 1650940) under a
// second call id and transfers C to him.
const (
	TransferCallID       = "1709633400.108"
	ConsultationCallID   = "1709633460.110"
	TransferCustomer     = "+31612345678"
	TransferAnnaOID      = "1650938"
	TransferBertOID      = "1650940"
	transferAnnaNumber   = "+31152511401"
	transferBertNumber   = "+31152511402"
	transferCustomerOID  = "1041861"
	transferCustomerName = "Klant BV"
)

// TransferOptions vary the end of AttendedTransfer.
type TransferOptions struct {
	// ConnectedUnderConsultation: after the consultation's hang-ups Xelion
	// reports the customer connected to Bert under the consultation's id.
	ConnectedUnderConsultation bool
	// FinalUnderConsultation: the final hang-up (C→Bert) comes under the
	// consultation's id instead of the customer's.
	FinalUnderConsultation bool
}

// AttendedTransfer is Xelion's documented attended transfer (C→Anna
// answered, Anna→Bert answered, transfer, hang-ups of C→Anna, Anna→Bert
// twice, later C→Bert) with its transfer event in the given shape. The
// helpdesk should get Answered for Anna, Transfer to Bert and, only at the
// last step, Disconnected for Bert.
func AttendedTransfer(shape TransferShape, o TransferOptions) []Step {
	customer := map[string]any{"oid": transferCustomerOID, "commonName": transferCustomerName, "objectType": "Organisation"}
	anna := map[string]any{"oid": TransferAnnaOID, "commonName": "Anna", "objectType": "Person"}
	bert := map[string]any{"oid": TransferBertOID, "commonName": "Bert", "objectType": "Person"}
	inbound := func(id string, agent map[string]any, number string, duration int) map[string]any {
		return map[string]any{
			"callId": id, "initiation": "incoming", "date": "2024-03-05 11:10:00",
			"callerPhoneNumber": TransferCustomer, "callerName": transferCustomerName, "callerAddressable": customer,
			"calleePhoneNumber": number, "calleeName": agent["commonName"], "calleeAddressable": agent,
			"duration": duration,
		}
	}
	consult := func(duration int) map[string]any {
		return map[string]any{
			"callId": ConsultationCallID, "initiation": "outgoing", "date": "2024-03-05 11:11:00",
			"callerPhoneNumber": transferAnnaNumber, "callerName": "Anna", "callerAddressable": anna,
			"calleePhoneNumber": transferBertNumber, "calleeName": "Bert", "calleeAddressable": bert,
			"duration": duration,
		}
	}
	step := func(typ string, obj any) Step { return Step{Notification: Notification(typ, obj)} }
	var transfer Step
	switch shape {
	case TransferCallEvent:
		transfer = step("callTransferredEvent", inbound(TransferCallID, bert, transferBertNumber, 0))
	case TransferCalls:
		transfer = step("callTransferredEvent", map[string]any{
			"transferredCall":  inbound(TransferCallID, anna, transferAnnaNumber, 60),
			"consultationCall": consult(20),
		})
	case TransferIDs:
		transfer = step("callTransferredEvent", map[string]any{
			"originalCallId": TransferCallID, "newCallId": ConsultationCallID,
		})
	case TransferEmpty:
		transfer = step("callTransferredEvent", map[string]any{"object": map[string]any{}})
	default:
		transfer = step("callTransferredEvent", map[string]any{
			"transferId": "77", "fromChannel": "SIP/anna-0001", "toChannel": "SIP/bert-0002",
		})
	}
	steps := []Step{
		step("newCallEvent", inbound(TransferCallID, anna, transferAnnaNumber, 0)),
		step("callConnectedEvent", inbound(TransferCallID, anna, transferAnnaNumber, 0)),
		step("newCallEvent", consult(0)),
		step("callConnectedEvent", consult(0)),
		transfer,
		step("callHungUpEvent", inbound(TransferCallID, anna, transferAnnaNumber, 60)),
		step("callHungUpEvent", consult(20)),
		step("callHungUpEvent", consult(20)),
	}
	if o.ConnectedUnderConsultation {
		steps = append(steps, step("callConnectedEvent", inbound(ConsultationCallID, bert, transferBertNumber, 0)))
	}
	final := TransferCallID
	if o.FinalUnderConsultation {
		final = ConsultationCallID
	}
	return append(steps, step("callHungUpEvent", inbound(final, bert, transferBertNumber, 300)))
}
