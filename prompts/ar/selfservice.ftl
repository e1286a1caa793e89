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
