# الخدمة الذاتية: أقرب الخدمات، ثلاثا ثلاثا.
# $phone يصل رقما رقما؛ $hours هو "none" إذا كان مغلقا اليوم؛ $address هو "none" إذا لم يوجد عنوان.

services-intro = هذه أقرب الخدمات.
services-item =
    { $name }، { $address ->
        [none] في { $town }.
       *[other] في { $address }، { $town }.
    } الهاتف: { $phone }. { $hours ->
        [none] مغلق اليوم.
       *[other] مفتوح اليوم: { $hours }.
    }
services-options = للاستماع مرة أخرى، اضغط 1. للتحدث مع موظف، اضغط 2. لثلاث خدمات أخرى، اضغط 9.
services-none = لم نجد خدمات قربك. سأحولك إلى موظف.
services-no-more = لا توجد خدمات أخرى.

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = لتصلك هذه الخدمات في رسالة نصية، اضغط { $digit }.
services-sms-sent = أرسلنا لك رسالة نصية بهذه الخدمات.
services-sms-failed = لم نتمكن من إرسال الرسالة النصية.
sms-portal = لمزيد من المعلومات: { $portal }
