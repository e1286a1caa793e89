# Waiting for an operator, and the callback request.

queue-enter = I am putting you through to an operator. Please stay on the line.
queue-position =
    { $position ->
        [1] You are next.
       *[other] You are number { $position } in the queue.
    } { $minutes ->
        [0] The wait is less than a minute.
        [one] The wait is about one minute.
       *[other] The wait is about { $minutes } minutes.
    }
queue-callback-offer = If you would rather be called back, press 1.
queue-transfer-failed = Sorry, the call did not go through. You are back in the queue, near the front.
callback-confirmed = Thank you. An operator will call you back on this number as soon as possible.
voicemail-prompt = After the tone, leave a short message with your name and what you need. Then press the hash key, or hang up.
