"""Provider webhooks: delivery reports (Twilio, Telnyx) and the inbound-text entry point."""
