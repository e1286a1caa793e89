# Самообслуговування: найближчі служби, по три.
# $phone уже поділено на цифри; $hours дорівнює "none", якщо сьогодні зачинено; $address "none", якщо адреси немає.

services-intro = Ось найближчі служби.
services-item =
    { $name }. { $address ->
        [none] { $town }.
       *[other] { $address }, { $town }.
    } Телефон: { $phone }. { $hours ->
        [none] Сьогодні зачинено.
       *[other] Сьогодні відчинено: { $hours }.
    }
services-options = Послухати ще раз: натисніть 1. Оператор: натисніть 2. Ще три служби: натисніть 9.
services-none = Поруч з вами служб не знайшлося. З'єдную з оператором.
services-no-more = Більше служб немає.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = Щоб отримати ці служби в SMS, натисніть { $digit }.
services-sms-sent = Ми надіслали вам SMS з цими службами.
services-sms-failed = Не вдалося надіслати SMS.
sms-portal = Докладніше: { $portal }
