# 等待工作人员，以及回电请求。

queue-enter = 现在为您转接工作人员。请不要挂机。
queue-position =
    { $position ->
        [1] 下一位就是您。
       *[other] 您排在第 { $position } 位。
    }{ $minutes ->
        [0] 等待时间不到一分钟。
        [1] 等待时间大约一分钟。
       *[other] 等待时间大约 { $minutes } 分钟。
    }
queue-callback-offer = 如果希望我们给您回电，请按 1。
queue-transfer-failed = 对不起，电话没有接通。您已重新排队，排在前面。
callback-confirmed = 谢谢。工作人员会尽快回电到这个号码。
voicemail-prompt = 听到提示音后，请留下简短留言，说明您的姓名和需要。然后按井号键，或挂断电话。
