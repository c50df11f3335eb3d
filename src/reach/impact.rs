//! What an AuthorizationPolicy or PeerAuthentication change opens (the webhook's `impact`
//! setting). Filled in below.
