//! The parts both state machines share: the receive buffer, the transmit
//! queue, the event queue and the deadline.

use std::collections::VecDeque;
use std::time::Instant;

use crate::frame::{encode_frame, take_frame, Framing};
use crate::{Event, HandshakeError, Stage};

#[derive(Debug)]
pub(crate) struct Core {
    framing: Framing,
    deadline: Option<Instant>,
    rx: Vec<u8>,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    pub(crate) stage: Stage,
}

impl Core {
    pub(crate) fn new(framing: Framing, deadline: Option<Instant>, stage: Stage) -> Self {
        Self {
            framing,
            deadline,
            rx: Vec::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            stage,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Established | Stage::Failed)
    }

    /// Queues one framed message.
    pub(crate) fn send(&mut self, body: &[u8]) {
        self.tx.push_back(encode_frame(body, self.framing));
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn emit(&mut self, ev: Event) {
        self.events.push_back(ev);
    }

    pub(crate) fn fail(&mut self, err: HandshakeError) {
        if self.is_done() {
            return;
        }
        self.stage = Stage::Failed;
        // Nothing buffered matters any more, and keeping it would only hold
        // memory the peer chose to send.
        self.rx = Vec::new();
        self.events.push_back(Event::Failed(err));
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.is_done())
    }

    /// Fails with `Timeout` if the deadline has passed; true if so.
    pub(crate) fn check_deadline(&mut self, now: Instant) -> bool {
        if !self.is_done() && self.deadline.is_some_and(|d| now >= d) {
            let stage = self.stage;
            self.fail(HandshakeError::Timeout { stage });
        }
        self.stage == Stage::Failed
    }

    /// Takes bytes from the caller. After the handshake succeeded they
    /// extend the leftover of a not yet polled `Established` event; after
    /// that, or after a failure, they are dropped (the caller owns the
    /// stream by then).
    pub(crate) fn push_input(&mut self, bytes: &[u8]) {
        match self.stage {
            Stage::Failed => {}
            Stage::Established => {
                if let Some(Event::Established(est)) = self
                    .events
                    .iter_mut()
                    .rev()
                    .find(|e| matches!(e, Event::Established(_)))
                {
                    est.leftover.extend_from_slice(bytes);
                }
            }
            _ => self.rx.extend_from_slice(bytes),
        }
    }

    /// The next complete message body, removed from the buffer.
    pub(crate) fn next_message(&mut self) -> Result<Option<Vec<u8>>, HandshakeError> {
        match take_frame(&self.rx, self.framing)? {
            None => Ok(None),
            Some((body, consumed)) => {
                let msg = self.rx[body].to_vec();
                self.rx.drain(..consumed);
                Ok(Some(msg))
            }
        }
    }

    /// Whether any received bytes wait in the buffer.
    pub(crate) fn has_buffered(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Everything still buffered: the leftover once established.
    pub(crate) fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rx)
    }
}
