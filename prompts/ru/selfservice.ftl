# Самообслуживание: ближайшие службы, по три.
# $phone уже разбит на цифры; $hours равно "none", если сегодня закрыто; $address "none", если адреса нет.

services-intro = Вот ближайшие службы.
services-item =
    { $name }. { $address ->
        [none] { $town }.
       *[other] { $address }, { $town }.
    } Телефон: { $phone }. { $hours ->
        [none] Сегодня закрыто.
       *[other] Сегодня открыто: { $hours }.
    }
services-options = Послушать ещё раз: нажмите 1. Оператор: нажмите 2. Ещё три службы: нажмите 9.
services-none = Рядом с вами служб не нашлось. Соединяю с оператором.
services-no-more = Больше служб нет.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = Чтобы получить эти службы по SMS, нажмите { $digit }.
services-sms-sent = Мы отправили вам SMS с этими службами.
services-sms-failed = Не удалось отправить SMS.
sms-portal = Подробнее: { $portal }
