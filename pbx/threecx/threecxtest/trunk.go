package threecxtest

// TrunkType is the DN type of a trunk. 3CX V20 was seen sending it as the
// party_dn_type of an agent's participant whose other party is the trunk
// (captured payloads in qmexnetworks/3cx-zammad-bridge); that a monitored
// trunk DN is listed with this type is assumed.
const TrunkType = "Wexternalline"

// TrunkParticipant returns the participant of an outside call on a
// monitored trunk DN, for Upsert: the trunk's own end of the call, whose
// party is the PBX side (partyDN of partyType, e.g. the route point
// "ROUTER" of type "Wroutepoint" or an extension), with did in party_did.
//
// Its shape is the documented participant object (3CX's call control
// endpoint page); which values 3CX puts into it on a trunk has not been
// captured. In particular that party_did holds the dialled number there,
// while it was seen empty on the agent's participant, is a guess.
func TrunkParticipant(trunk string, id, callID int, partyDN, partyType, did string) map[string]any {
	return map[string]any{
		"id": id, "status": "Connected", "dn": trunk,
		"party_caller_name": "", "party_dn": partyDN, "party_caller_id": partyDN,
		"party_did": did, "device_id": "", "party_dn_type": partyType,
		"direct_control":   false,
		"originated_by_dn": "", "originated_by_type": "None",
		"referred_by_dn": "", "referred_by_type": "None",
		"on_behalf_of_dn": "", "on_behalf_of_type": "None",
		"callid": callID, "legid": 1,
	}
}
