package sip

// ContinuesCalls declares to the tracker that this source can continue a
// call under a new call id without a link: a B2BUA rings each phone of a
// group on a dialog of its own, and a blind transfer without Replaces or
// Referred-By starts a new dialog. Its calls are correlated by number and
// wait TRANSFER_WINDOW after their last leg ended before Disconnected.
const ContinuesCalls = true
