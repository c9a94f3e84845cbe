"""Twilio adapter: webhook signature verification, TwiML reading, and the REST client for SMS.

Everything that knows Twilio's wire formats (X-Twilio-Signature, form parameters, TwiML XML, the Messages
API) lives here; the flow (`ivr.flow`) builds TwiML with `twilio.twiml.voice_response.VoiceResponse`.
"""
