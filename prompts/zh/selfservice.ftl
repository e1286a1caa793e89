# 自助服务：最近的服务，每次三个。
# $phone 已按数字分开；今天不开门时 $hours 为 "none"；没有地址时 $address 为 "none"。

services-intro = 以下是最近的服务。
services-item =
    { $name }，{ $address ->
        [none] 在 { $town }。
       *[other] 地址 { $address }，{ $town }。
    }电话：{ $phone }。{ $hours ->
        [none] 今天不开门。
       *[other] 今天开门：{ $hours }。
    }
services-options = 再听一遍，请按 1。人工服务，请按 2。再听三个，请按 9。
services-none = 您附近没有找到服务。现在为您转接工作人员。
services-no-more = 没有更多服务了。

# The readback's services sent by text message (config/ivr.toml, [nodes.self-service.sms]). The
# text is `services-item` per service (with the phone as written), then `sms-portal`.
services-sms-offer = 如需通过短信接收这些服务，请按 { $digit }。
services-sms-sent = 我们已经把这些服务用短信发给您了。
services-sms-failed = 短信没有发送成功。
sms-portal = 更多信息：{ $portal }
